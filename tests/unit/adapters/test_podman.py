"""The podman adapter against a real podman REST service on the host (no machine needed)."""

from __future__ import annotations

import asyncio

import pytest

from autoupdated.adapters.podman import Podman
from tests.harness.images import ImageBuilder
from tests.harness.podman_host import PodmanService

pytestmark = pytest.mark.machine


def test_container_state_matches_names_exactly_never_id_prefixes(
    podman_host: PodmanService, podman_service: str, image_builder: ImageBuilder
) -> None:
    """While a unit has removed its container, a name like "c142" must not find another
    container whose ID starts with c142 (podman's API resolves names, then ID prefixes)."""
    ref = image_builder.build("healthy", "adapter-state")
    archive = image_builder.save(ref, image_builder.workdir / "adapter-state.tar")
    podman_host.podman("load", "-q", "-i", str(archive))
    podman_host.podman("run", "-d", "--name", "adapter-state", ref, "sleep", "600")
    try:
        full_id = podman_host.podman("inspect", "--format", "{{.Id}}", "adapter-state").stdout.strip()
        api = Podman(podman_service)
        state = asyncio.run(api.container_state("adapter-state"))
        assert state is not None and state.id == full_id and state.running and state.has_healthcheck
        # podman itself finds the container by an ID prefix; the adapter, asked for that as a name, does not
        prefix = full_id[:8]
        assert podman_host.podman("inspect", "--format", "{{.Name}}", prefix).stdout.strip() == "adapter-state"
        assert asyncio.run(api.container_state(prefix)) is None
        assert asyncio.run(api.container_state("adapter-missing")) is None
    finally:
        podman_host.podman("rm", "-f", "-t", "0", "adapter-state", check=False)
