"""Fixtures of the machine tests: the installed daemon, and images pushed to the local registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.harness.daemon import CONFIG, DROPIN_DIR, STATE, UNIT, Daemon, counter, install, uninstall
from tests.harness.images import ImageBuilder
from tests.harness.machine import Machine
from tests.harness.registry import Registry


@pytest.fixture(scope="module")
def installed(machine: Machine) -> Iterator[Machine]:
    install(machine)
    try:
        yield machine
    finally:
        uninstall(machine)


@pytest.fixture
def daemon(installed: Machine, machine_services: Machine) -> Iterator[Daemon]:
    d = Daemon(machine_services)
    try:
        yield d
    finally:
        m = machine_services
        m.systemctl("stop", UNIT, check=False, timeout=180)
        m.systemctl("disable", UNIT, check=False)
        m.systemctl("reset-failed", UNIT, check=False)
        m.run("rm", "-rf", CONFIG, STATE, DROPIN_DIR)
        m.systemctl("daemon-reload")


@pytest.fixture(scope="module")
def images(machine: Machine, registry: Registry, image_builder: ImageBuilder) -> Iterator[Callable[[str], str]]:
    """`push(name)`: a new image (new digest) pushed as REGISTRY/name:latest; returns the reference."""
    machine.trust_registry(registry.host_port, insecure=True)

    def push(name: str) -> str:
        ref = f"{registry.host_port}/{name}:latest"
        image_builder.push(image_builder.build("good", f"{name}-{next(counter)}"), ref)
        return ref

    try:
        yield push
    finally:
        machine.untrust_registry(registry.host_port)
