"""Quadlet units in a Debian 13 machine: `.container`, `.pod` and `.kube` files, as podman 5 runs them.

Quadlet's generator turns each file in the unit directory into a service at `daemon-reload`:
`web.container` → `web.service` (container `systemd-web`), `db.pod` → `db-pod.service` (pod
`systemd-db`), `app.kube` → `app.service`. The rootfs's type-wide drop-in
(`container.d/10-sandbox.conf`, `PodmanArgs=--cgroups=disabled`) makes them start under nspawn.

    q = Quadlet(machine13)
    unit = q.container("web", "127.0.0.1:5000/app:latest", AutoUpdate="registry")
    q.start(unit)
    ...
    q.cleanup()

Rootless: `Quadlet(m, user="alice")` writes to `~alice/.config/containers/systemd/` and drives
`systemctl --user` through the user's bus (the user must be lingering: `add_user`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.harness.images import RUN_FOREVER
from tests.harness.machine import Machine, MachineError, wait_active

SYSTEM_DIR = "/etc/containers/systemd"


def _section(name: str, keys: Mapping[str, str | Sequence[str]]) -> str:
    lines = [f"[{name}]"]
    for key, value in keys.items():
        for one in [value] if isinstance(value, str) else value:
            lines.append(f"{key}={one}")
    return "\n".join(lines) + "\n"


def exec_line(argv: Sequence[str]) -> str:
    """A command for `Exec=`: each word quoted the systemd way."""
    return " ".join(json.dumps(a) for a in argv)


@dataclass
class User:
    name: str
    uid: int
    home: str

    @property
    def env(self) -> dict[str, str]:
        run = f"/run/user/{self.uid}"
        return {"XDG_RUNTIME_DIR": run, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={run}/bus",
                "HOME": self.home, "USER": self.name, "LOGNAME": self.name}


@dataclass
class Quadlet:
    machine: Machine
    user: User | None = None
    files: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"{self.user.home}/.config/containers/systemd" if self.user else SYSTEM_DIR

    # -- running as the unit's owner -------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A command as root, or as the rootless user (setpriv) with its session's environment."""
        if self.user is None:
            return self.machine.run(*argv, check=check, timeout=timeout, env=env)
        full = {**self.user.env, **(env or {})}
        return self.machine.run("setpriv", f"--reuid={self.user.uid}", f"--regid={self.user.uid}",
                                "--init-groups", "--", *argv, check=check, timeout=timeout, env=full)

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        scope = ("--user",) if self.user else ()
        return self.run("systemctl", *scope, *args, check=check, timeout=timeout)

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("podman", *args, check=check, timeout=timeout)

    # -- unit files -------------------------------------------------------------------------

    def write(self, filename: str, text: str) -> str:
        path = f"{self.directory}/{filename}"
        self.machine.write(path, text)
        if self.user:
            self.machine.run("chown", "-R", f"{self.user.uid}:{self.user.uid}", f"{self.user.home}/.config")
        self.files.append(path)
        return path

    def container(
        self,
        name: str,
        image: str,
        *,
        exec: Sequence[str] | None = tuple(RUN_FOREVER),
        unit: Mapping[str, str | Sequence[str]] | None = None,
        service: Mapping[str, str | Sequence[str]] | None = None,
        **keys: str | Sequence[str],
    ) -> str:
        """`NAME.container` with `Image=` and the `[Container]` keys given (e.g.
        `AutoUpdate="registry"`, `Pod="db.pod"`, `Notify="healthy"`); returns `NAME.service`."""
        container: dict[str, str | Sequence[str]] = {"Image": image, "StopTimeout": "1"}
        if exec is not None:
            container["Exec"] = exec_line(exec)
        container.update(keys)
        text = ""
        if unit:
            text += _section("Unit", unit)
        text += _section("Container", container)
        if service:
            text += _section("Service", service)
        text += _section("Install", {"WantedBy": "default.target"})
        self.write(f"{name}.container", text)
        return self._unit(f"{name}.service")

    def pod(self, name: str, **keys: str | Sequence[str]) -> str:
        """`NAME.pod` on the host's network (the bridge needs a writable /proc/sys); returns
        `NAME-pod.service`."""
        self.write(f"{name}.pod", _section("Pod", {"Network": "host", **keys}))
        return self._unit(f"{name}-pod.service")

    def kube(self, name: str, yaml: str, **keys: str | Sequence[str]) -> str:
        """`NAME.kube` with its YAML beside it; returns `NAME.service`. Needs a machine booted
        with CAP_NET_ADMIN and writable cgroups (`writable_cgroups`)."""
        self.write(f"{name}.yaml", yaml)
        self.write(f"{name}.kube", _section("Kube", {"Yaml": f"{name}.yaml", **keys}))
        return self._unit(f"{name}.service")

    def _unit(self, unit: str) -> str:
        self.units.append(unit)
        return unit

    # -- systemd ----------------------------------------------------------------------------

    def reload(self) -> None:
        """Run the generator: every unit file written so far becomes a service."""
        self.systemctl("daemon-reload")

    def start(self, *units: str, timeout: float = 60) -> None:
        """daemon-reload, then start `units` and wait until each is active."""
        self.reload()
        for unit in units:
            r = self.systemctl("start", unit, check=False, timeout=timeout)
            if r.returncode != 0:
                raise MachineError(f"systemctl start {unit} failed: {r.stderr.strip()}\n{self.report(unit)}")
            self.wait_active(unit, timeout=timeout)

    def wait_active(self, unit: str, timeout: float = 60) -> None:
        wait_active(self.systemctl, self.report, unit, timeout)

    def report(self, unit: str) -> str:
        status = self.systemctl("status", "--no-pager", "-l", unit, check=False).stdout
        scope = ["--user-unit", unit] if self.user else ["-u", unit]
        log = self.machine.run("journalctl", "--no-pager", "-q", "-n", "40", *scope, check=False).stdout
        return f"{status}\n--- journal of {unit} ---\n{log}"

    def cleanup(self) -> None:
        """Stop every unit made here, remove their files, containers, pods and images."""
        if self.units:
            self.systemctl("stop", *reversed(self.units), check=False, timeout=120)
            self.systemctl("reset-failed", *self.units, check=False)
        if self.files:
            self.machine.run("rm", "-f", *self.files)
            self.reload()
        self.files, self.units = [], []
        self.podman("rm", "--all", "--force", "-t", "0", check=False)
        self.podman("pod", "rm", "--all", "--force", check=False)
        self.podman("image", "prune", "--all", "--force", check=False)
        self.systemctl("reset-failed", check=False)


def writable_cgroups(machine: Machine) -> None:
    """`podman kube play` needs writable cgroup hierarchies: remount each controller rw."""
    machine.sh('for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d" 2>/dev/null || true; done')


def add_user(machine: Machine, name: str) -> User:
    """A lingering user with a running `user@UID.service` and podman settings for nspawn."""
    machine.run("useradd", "-m", "-s", "/bin/sh", name)
    uid = int(machine.run("id", "-u", name).stdout)
    home = f"/home/{name}"
    r = machine.run("loginctl", "enable-linger", name, check=False)
    if r.returncode != 0:
        # Seen here: "Could not enable linger: Protocol driver not attached" when run through
        # nsenter (no login session logind knows). Lingering is a flag file that logind reads
        # at boot, plus the user manager it starts: do both.
        machine.run("mkdir", "-p", "/var/lib/systemd/linger")
        machine.run("touch", f"/var/lib/systemd/linger/{name}")
        machine.systemctl("start", f"user@{uid}.service", timeout=60)
    machine.wait_active(f"user@{uid}.service", timeout=30)
    # Quadlet's user units wait (podman-user-wait-network-online.service) for the system's
    # network-online.target, which nothing pulls in on this machine.
    machine.systemctl("start", "network-online.target")
    conf = machine.read("/etc/containers/containers.conf")
    machine.write(f"{home}/.config/containers/containers.conf", conf)
    machine.run("chown", "-R", f"{uid}:{uid}", f"{home}/.config")
    return User(name, uid, home)


# The columns podman and autoupdated are compared on, side by side.
ROW_KEYS = ("Unit", "ContainerName", "Policy", "Updated")


def report_rows(stdout: str) -> list[dict[str, str]]:
    """A `--format json` report's rows, those columns only, sorted by unit and container."""
    if not stdout.strip():
        return []
    return sorted(({k: str(row[k]) for k in ROW_KEYS} for row in json.loads(stdout)),
                  key=lambda row: (row["Unit"], row["ContainerName"]))
