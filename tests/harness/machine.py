"""A booted Debian with real systemd, journald, D-Bus and podman, under systemd-nspawn.

The rootfs comes from `scripts/build-rootfs.sh` (a cached tarball); each `Machine` extracts it
into a fresh directory, boots it, and enters it with `nsenter`. The repository is bind-mounted
read-only at /src, and `/opt/autoupdated` holds a venv with autoupdated's runtime dependencies,
so `machine.autoupdated(...)` runs the working tree's code against the machine's own systemd and
podman. The machine shares the host's network: it reaches registries on the host's 127.0.0.1.

    m = Machine.boot()
    unit = m.create_service("web", "127.0.0.1:5000/app:latest", policy="registry")
    m.autoupdated("check", "--format", "json")
    m.stop()

Two platforms (`PLATFORMS`): "bookworm" (Debian 12, podman 4.3, the default) and "trixie"
(Debian 13, podman 5.4 with Quadlet; `Machine.boot(platform="trixie")`). Quadlet units are
made by `tests/harness/quadlet.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import procs
from tests.harness.images import RUN_FOREVER

REPO = Path(__file__).resolve().parents[2]
MACHINES_DIR = Path("/var/tmp")
MACHINE_PREFIX = "autoupdated-machine-"
BUILD_ROOTFS = REPO / "scripts" / "build-rootfs.sh"
MACHINE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT_DIR = "/etc/systemd/system"
VENV_PYTHON = "/opt/autoupdated/bin/python"
PLATFORMS = ("bookworm", "trixie")
# What every command run in a machine of that platform gets in its environment.
_PLATFORM_ENV: dict[str, dict[str, str]] = {
    "bookworm": {},
    # podman 5 warns about cgroups v1 on every call here, polluting captured stderr.
    "trixie": {"PODMAN_IGNORE_CGROUPSV1_WARNING": "1"},
}


class MachineError(RuntimeError):
    """The machine could not boot, or a unit did not reach the state asked for."""


def wait_active(
    systemctl: Callable[..., subprocess.CompletedProcess[str]],
    report: Callable[[str], str],
    unit: str,
    timeout: float,
) -> None:
    """Wait until `unit` is active by `systemctl` (the system's or a user's manager); fail at once,
    with `report(unit)`, if it failed."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = systemctl("is-active", unit, check=False).stdout.strip()
        if state == "active":
            return
        if state == "failed":
            break
        time.sleep(0.1)
    raise MachineError(f"unit {unit} is {state!r}, not active\n{report(unit)}")


def rootfs_tarball(*, build: bool = True, platform: str = "bookworm") -> Path:
    """The cached rootfs tarball of `platform` for the current recipe, built first if missing
    and `build`."""
    if platform not in PLATFORMS:
        raise MachineError(f"unknown machine platform {platform!r} (known: {', '.join(PLATFORMS)})")
    args = ["bash", str(BUILD_ROOTFS), platform] + ([] if build else ["--path"])
    out = procs.run(args, timeout=1800).stdout.strip().splitlines()
    if not out:
        raise MachineError(f"{BUILD_ROOTFS} printed no path")
    return Path(out[-1])


@dataclass
class BootTimes:
    """Seconds spent in each phase of `Machine.boot` (for reports and regressions)."""

    extract: float = 0.0
    boot: float = 0.0


@dataclass
class _Created:
    units: list[str] = field(default_factory=list)
    unit_files: list[str] = field(default_factory=list)


class Machine:
    """One booted machine; see the module docstring. Stop it with `stop()` (idempotent)."""

    root: Path
    pid: int
    nspawn_pid: int

    def __init__(
        self,
        tarball: Path | None = None,
        *,
        name: str | None = None,
        workdir: Path | None = None,
        repo: Path = REPO,
        binds: Sequence[tuple[Path, str]] = (),
        tmpfs_size: str | None = "8g",
        platform: str = "bookworm",
        capabilities: Sequence[str] = (),
    ) -> None:
        self.platform = platform
        self.tarball = tarball or rootfs_tarball(platform=platform)
        self.capabilities = list(capabilities)
        self.name = name or f"autoupdated-test-{uuid.uuid4().hex[:6]}"
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=MACHINE_PREFIX, dir=MACHINES_DIR))
        self.root = self.workdir / "root"
        self.log = self.workdir / "nspawn.log"
        self.repo = repo
        self.binds = list(binds)
        self.tmpfs_size = tmpfs_size
        self._root_mounted = False
        self.times = BootTimes()
        self.failed_units: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._created = _Created()
        self._nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        self.pid = 0
        self.nspawn_pid = 0
        self._cgroups: list[Path] = []
        self._init_start: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def boot(cls, tarball: Path | None = None, *, timeout: float = 90, **kw: object) -> Machine:
        """Extract, start and wait until systemd reports running (or degraded)."""
        m = cls(tarball, **kw)  # type: ignore[arg-type]
        try:
            m.start(timeout=timeout)
        except BaseException:
            m.stop()
            raise
        return m

    def start(self, *, timeout: float = 90) -> None:
        procs.on_exit(self.stop)
        t0 = time.monotonic()
        self.root.mkdir(parents=True)
        self._save_state()
        if self.tmpfs_size:
            # On tmpfs: extraction takes about a second where the same tar on this VM's ext4
            # took 1 to 18 s (all system time), and nothing is left on disk after a crash.
            procs.run(
                [
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    f"mode=0755,size={self.tmpfs_size}",
                    "autoupdated-machine",
                    str(self.root),
                ]
            )
            self._root_mounted = True
        procs.run(
            [
                "sh",
                "-c",
                'zstd -dc "$1" | tar -C "$2" --numeric-owner --xattrs --xattrs-include="*" -xf -',
                "extract",
                str(self.tarball),
                str(self.root),
            ],
            timeout=300,
        )
        self.times.extract = time.monotonic() - t0
        t1 = time.monotonic()
        self._spawn(timeout)
        self.times.boot = time.monotonic() - t1

    def _spawn(self, timeout: float) -> None:
        """Start systemd-nspawn on the extracted root and wait until systemd is up."""
        argv = [
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "-q",
            "-b",
            "--link-journal=no",
            "--console=read-only",
            "-D",
            str(self.root),
            "-M",
            self.name,
            f"--bind-ro={self.repo}:/src",
            *[f"--bind={host}:{inside}" for host, inside in self.binds],
            *[f"--capability={cap}" for cap in self.capabilities],
        ]
        env = {
            "PATH": MACHINE_PATH + ":" + os.environ.get("PATH", ""),
            "LANG": "C.UTF-8",
            "SYSTEMD_LOG_LEVEL": "warning",
        }
        self._cgroups = _make_cgroups(f"autoupdated-test/{self.name}")
        # Start nspawn inside those cgroups: `--keep-unit` puts the machine at `payload/` under
        # the caller's cgroup, which is the same for every machine booted from this host, so
        # two machines at once would share (and tear down) each other's unit cgroups
        # (seen: units failing with status 219/CGROUP).
        enter = 'for d in $CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 1; done; exec "$@"'
        env["CGROUPS"] = " ".join(str(d) for d in self._cgroups)
        self._proc = procs.spawn(["sh", "-c", enter, "nspawn", *argv], log=self.log, env=env)
        self.nspawn_pid = self._proc.pid
        self._save_state()
        self.pid = procs.wait_for(
            self._find_init, timeout=30, what="the machine's PID 1", proc=self._proc, log=self.log
        )
        self._init_start = procs.starttime(self.pid)
        self._save_state()
        self._wait_running(deadline=time.monotonic() + timeout)

    def power_off(self, timeout: float = 60) -> None:
        """Shut the machine down cleanly and wait until it is gone, keeping its root, so that
        `boot_again` can boot the same disk (reboot tests: what survives, what catches up)."""
        if self._proc is None:
            return
        self.run("systemctl", "poweroff", "--no-block", check=False, timeout=10)
        self._proc.wait(timeout)
        procs.stop(self._proc, timeout=5)
        self._proc = None
        procs.wait_for(lambda: not self._init_alive(), timeout=10, what="machine PID 1 to exit")
        _remove_cgroups(self._cgroups)
        self._cgroups = []
        _remove_propagate_dir(self.name)

    def boot_again(self, timeout: float = 90) -> None:
        """Boot the powered-off machine again from the same root (state on disk kept; /run and
        /tmp are fresh, as after a real reboot)."""
        if self._proc is not None:
            raise MachineError(f"machine {self.name} is still running: power_off() first")
        self._spawn(timeout)

    def reboot(self, timeout: float = 90) -> None:
        """power_off() then boot_again(): a reboot the harness can see completing."""
        self.power_off()
        self.boot_again(timeout)

    def _save_state(self) -> None:
        """Who owns this machine and its PIDs, so `reap_stale_machines` can end it by PID if
        its owner dies without cleaning up (SIGKILL, OOM)."""
        state = {
            "name": self.name,
            "owner_pid": os.getpid(),
            "owner_start": procs.starttime(os.getpid()),
            "nspawn_pid": self.nspawn_pid,
            "nspawn_start": procs.starttime(self.nspawn_pid),
            "init_pid": self.pid,
            "init_start": procs.starttime(self.pid),
            "root_mounted": self._root_mounted,
            "cgroups": [str(c) for c in self._cgroups],
        }
        tmp = self.workdir / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.workdir / "state.json")

    def _find_init(self) -> int | None:
        """PID 1 of the machine: the child of systemd-nspawn once it runs systemd."""
        for task in Path(f"/proc/{self.nspawn_pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    comm = Path(f"/proc/{child}/comm").read_text().strip()
                    if comm == "systemd" and self._in_other_pidns(int(child)):
                        return int(child)
        return None

    @staticmethod
    def _in_other_pidns(pid: int) -> bool:
        return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")

    def _wait_running(self, deadline: float) -> None:
        state = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise MachineError(
                    f"systemd-nspawn exited ({self._proc.returncode}) during boot" + procs.tail(self.log)
                )
            remaining = max(1.0, deadline - time.monotonic())
            try:
                r = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=remaining)
            except subprocess.TimeoutExpired:
                break
            state = r.stdout.strip()
            if state == "running":
                return
            if state == "degraded":
                self.failed_units = self.list_failed_units()
                warnings.warn(
                    f"machine {self.name} booted degraded; failed units: {', '.join(self.failed_units)}", stacklevel=3
                )
                return
            time.sleep(0.1)  # "offline"/"unknown" before systemd's bus is up
        raise MachineError(f"machine {self.name} did not finish booting (last state {state!r})" + procs.tail(self.log))

    def list_failed_units(self) -> list[str]:
        r = self.systemctl("list-units", "--failed", "--plain", "--no-legend", check=False)
        return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]

    def stop(self, timeout: float = 15) -> None:
        """Power off (bounded), then kill systemd-nspawn and the machine's PID 1 by PID;
        remove the extracted root."""
        procs.forget_exit(self.stop)
        if self._proc is not None:
            if self._proc.poll() is None and self.pid:
                with contextlib.suppress(Exception):
                    self.run("systemctl", "poweroff", "--no-block", check=False, timeout=10)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout)
            if self._init_alive():
                # nspawn gone or stuck: the namespace lives as long as its PID 1.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, 9)
            procs.stop(self._proc, timeout=5)
            self._proc = None
            procs.wait_for(lambda: not self._init_alive(), timeout=10, what="machine PID 1 to exit")
        _remove_cgroups(self._cgroups)
        self._cgroups = []
        _remove_propagate_dir(self.name)
        self._remove_workdir()

    @staticmethod
    def _alive(pid: int) -> bool:
        """Kept for callers that used it; prefer power_off()/boot_again()/reboot()."""
        return procs.starttime(pid) is not None

    def _init_alive(self) -> bool:
        """Is the machine's PID 1 still running (the same process, not a reused PID)?"""
        return bool(self.pid) and procs.starttime(self.pid) == self._init_start

    def _remove_workdir(self) -> None:
        if not self.workdir.exists():
            return
        if self._root_mounted:
            if procs.run(["umount", str(self.root)], check=False).returncode != 0:
                procs.run(["umount", "-l", str(self.root)], check=False)
            self._root_mounted = False
        prefix = str(self.workdir.resolve()) + "/"
        with open("/proc/self/mounts") as f:
            mounted = [ln.split()[1] for ln in f if ln.split()[1].startswith(prefix)]
        if mounted:  # never delete through a mount (e.g. a bind of the repository)
            raise MachineError(f"not removing {self.workdir}: still mounted: {mounted}")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- running things inside ------------------------------------------------------------

    def run(
        self,
        *argv: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the machine (all its namespaces) with a clean environment."""
        full_env = {
            "PATH": MACHINE_PATH,
            "HOME": "/root",
            "USER": "root",
            "LOGNAME": "root",
            "LANG": "C.UTF-8",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
            **_PLATFORM_ENV[self.platform],
        }
        if env:
            full_env.update(env)
        return procs.run(
            [self._nsenter, "-t", str(self.pid), "-a", "-r", "-w", "--", *argv],
            env=full_env,
            check=check,
            timeout=timeout,
            input=input,
        )

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        """`/bin/sh -c SCRIPT` inside the machine; keywords as for `run`."""
        return self.run("/bin/sh", "-c", script, **kw)  # type: ignore[arg-type]

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside the machine (through its own mounts: /run and /tmp are tmpfs)."""
        self.run(
            "/bin/sh",
            "-c",
            'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"',
            "write",
            path,
            f"{mode:o}",
            input=text,
        )

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout

    def host_path(self, path: str) -> Path:
        """Where a path inside the running machine is seen from the host (sockets in /run)."""
        return Path(f"/proc/{self.pid}/root") / path.lstrip("/")

    @property
    def podman_socket(self) -> Path:
        return self.host_path("/run/podman/podman.sock")

    @property
    def dbus_socket(self) -> Path:
        return self.host_path("/run/dbus/system_bus_socket")

    def podman(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("podman", *args, **kw)  # type: ignore[arg-type]

    def systemctl(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, **kw)  # type: ignore[arg-type]

    def autoupdated(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = False,
        timeout: float = 300,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`python -m autoupdated ARGS` from the working tree (/src) with the machine's venv."""
        full_env = {"PYTHONPATH": "/src", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
        if env:
            full_env.update(env)
        return self.run(
            VENV_PYTHON, "-m", "autoupdated", *args, env=full_env, check=check, timeout=timeout, input=input
        )

    # -- systemd --------------------------------------------------------------------------

    def unit_property(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def wait_active(self, unit: str, timeout: float = 30) -> None:
        """Wait until `unit` is active; fail at once, with its journal, if it failed."""
        wait_active(self.systemctl, self.unit_report, unit, timeout)

    def unit_report(self, unit: str) -> str:
        """`systemctl status` and the unit's last journal lines, for failure messages."""
        status = self.systemctl("status", "--no-pager", "-l", unit, check=False).stdout
        log = self.run("journalctl", "--no-pager", "-q", "-n", "40", "-u", unit, check=False).stdout
        return f"{status}\n--- journal of {unit} ---\n{log}"

    def journal(self, *match: str, unit: str | None = None, since: float | str | None = None) -> list[dict[str, str]]:
        """Journal entries as dicts (`journalctl -o json`); `match` items are FIELD=VALUE.

        `since` as an epoch float keeps entries from that microsecond on: `journalctl --since`
        takes whole seconds, and a previous test's last entry in the same second is not this
        test's (it made a window test's last run record pass for the next test's first).  The
        machine shares the host's clock.
        """
        args = ["journalctl", "--no-pager", "-q", "-o", "json"]
        if unit:
            args += ["-u", unit]
        if isinstance(since, float):
            args += ["--since", f"@{int(since)}"]
        elif since:
            args += ["--since", since]
        r = self.run(*args, *match, check=False)
        found = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
        if isinstance(since, float):
            since_us = int(since * 1_000_000)
            found = [e for e in found if int(e.get("__REALTIME_TIMESTAMP", "0")) >= since_us]
        return found

    # -- registries -----------------------------------------------------------------------

    def trust_registry(self, host_port: str, *, insecure: bool = True, ca_pem: str | None = None) -> None:
        """Let the machine's podman, and its API service, use a test registry: declare it insecure
        (plain HTTP) and/or install its CA as /etc/containers/certs.d/HOST:PORT/ca.crt."""
        if ca_pem is not None:
            self.write(f"/etc/containers/certs.d/{host_port}/ca.crt", ca_pem)
        if insecure:
            self.write(
                f"/etc/containers/registries.conf.d/50-test-{_file_part(host_port)}.conf",
                f'[[registry]]\nlocation = "{host_port}"\ninsecure = true\n',
            )
        # podman's API service reads registries.conf once: a running one would pull from this
        # registry over HTTPS ("server gave HTTP response to HTTPS client"; it failed two daemon
        # tests that ran after another module's service had started).  Its socket starts a fresh
        # one at the next request; containers are not affected.
        self.systemctl("stop", "podman.service", check=False)

    def untrust_registry(self, host_port: str) -> None:
        self.run(
            "rm",
            "-rf",
            f"/etc/containers/certs.d/{host_port}",
            f"/etc/containers/registries.conf.d/50-test-{_file_part(host_port)}.conf",
        )

    # -- container services (bats' generate_service) --------------------------------------

    def create_service(
        self,
        name: str,
        image: str,
        *,
        policy: str | None,
        command: Sequence[str] | None = tuple(RUN_FOREVER),
        extra_args: Sequence[str] = (),
        requires: str | None = None,
        pod: str | None = None,
        start: bool = True,
    ) -> str:
        """Create container `name` from `image`, turn it into a systemd unit, start it.

        As podman's system tests do: `podman create` (with label io.containers.autoupdate=POLICY
        unless `policy` is None) → `podman generate systemd --new --files --name` into
        /etc/systemd/system → `--cgroups=no-conmon` replaced by `--cgroups=disabled` (nspawn)
        → `podman rm` → daemon-reload → `systemctl start`. `command=None` keeps the image's own.

        With `pod`, a new pod of that name holds the container; the pod's unit
        (`pod-POD.service`) is generated and started. Returns the container's unit name,
        which is what its PODMAN_SYSTEMD_UNIT label names.
        """
        create = ["create", *extra_args, "--name", name]
        if policy is not None:
            create += ["--label", f"io.containers.autoupdate={policy}"]
        if pod is not None:
            self.podman("pod", "create", "--name", pod)
            create += ["--pod", pod]
        self.podman(*create, image, *(command or ()))
        target = pod if pod is not None else name
        gen = ["podman", "generate", "systemd", "--new", "--files", "--name"]
        if requires:
            gen.append(f"--requires={requires}")
        r = self.sh(f"cd {UNIT_DIR} && " + shlex.join([*gen, target]))
        files = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().endswith(".service")]
        if not files:
            raise MachineError(f"podman generate systemd wrote no unit for {target}: {r.stdout}{r.stderr}")
        self._created.unit_files += files
        self.run("sed", "-i", "s/--cgroups=no-conmon/--cgroups=disabled/g", *files)
        self.podman("rm", "-t", "0", "-f", name)
        if pod is not None:
            self.podman("pod", "rm", "-f", pod)
        unit = f"container-{name}.service"
        main_unit = f"pod-{pod}.service" if pod is not None else unit
        self._created.units.append(main_unit)
        if pod is not None:
            self._created.units.append(unit)
        self.systemctl("daemon-reload")
        if start:
            self.start_unit(main_unit)
            if pod is not None:  # the pod's unit only Wants= the container's, which starts after it
                self.wait_active(unit, timeout=60)
        return unit

    def start_unit(self, unit: str, timeout: float = 60) -> None:
        r = self.systemctl("start", unit, check=False, timeout=timeout)
        if r.returncode != 0:
            raise MachineError(f"systemctl start {unit} failed: {r.stderr.strip()}\n{self.unit_report(unit)}")
        self.wait_active(unit, timeout=timeout)

    def container_image_id(self, name: str) -> str:
        return self.podman("inspect", "--format", "{{.Image}}", name).stdout.strip()

    def container_id(self, name: str) -> str:
        return self.podman("inspect", "--format", "{{.Id}}", name).stdout.strip()

    def image_id(self, ref: str) -> str:
        return self.podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    def cleanup_services(self) -> None:
        """Stop and remove every unit create_service made, every container and pod, and every
        image; the machine is then as after boot for the next test."""
        units = list(dict.fromkeys(reversed(self._created.units)))
        if units:
            self.systemctl("stop", *units, check=False, timeout=120)
            self.systemctl("reset-failed", *units, check=False)
        if self._created.unit_files:
            self.run("rm", "-f", *self._created.unit_files)
            self.systemctl("daemon-reload")
        self._created = _Created()
        self.podman("rm", "--all", "--force", "-t", "0", check=False, timeout=120)
        self.podman("pod", "rm", "--all", "--force", check=False, timeout=120)
        self.podman("image", "prune", "--all", "--force", check=False, timeout=120)
        self.systemctl("reset-failed", check=False)


def reap_stale_machines() -> list[str]:
    """End and remove machines whose owning process is gone (killed before it could clean up).

    Only directories holding a state file written by `Machine` are considered; their PIDs are
    killed only while the recorded start time still matches, so a reused PID is never hit.
    Returns the names of the machines reaped.
    """
    reaped = []
    for d in sorted(MACHINES_DIR.glob(MACHINE_PREFIX + "*")):
        try:
            st = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if st.get("owner_start") is not None and procs.starttime(st["owner_pid"]) == st["owner_start"]:
            continue  # its owner is alive: not stale
        victims = [
            st[f"{k}_pid"]
            for k in ("init", "nspawn")
            if st.get(f"{k}_pid") and procs.starttime(st[f"{k}_pid"]) == st.get(f"{k}_start")
        ]
        for pid in victims:  # PID 1 first: killing it ends the whole machine
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

        def gone(pids: list[int] = victims) -> bool:
            return all(procs.starttime(p) is None for p in pids)

        with contextlib.suppress(TimeoutError):
            procs.wait_for(gone, timeout=10, what="stale machine to exit")
        _remove_cgroups([Path(c) for c in st.get("cgroups", [])])
        _remove_propagate_dir(st.get("name", ""))
        root = d / "root"
        if _is_mountpoint(root):
            procs.run(["umount", "-l", str(root)], check=False)
        if not _is_mountpoint(root):
            shutil.rmtree(d, ignore_errors=True)
            reaped.append(str(st.get("name")))
    return reaped


def _is_mountpoint(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def _remove_propagate_dir(name: str) -> None:
    """nspawn leaves /run/systemd/nspawn/propagate/NAME when /run is not a tmpfs (as here)."""
    if not name:
        return
    d = Path("/run/systemd/nspawn/propagate") / name
    if d.is_dir() and not _is_mountpoint(d):
        shutil.rmtree(d, ignore_errors=True)


def _cgroup_roots() -> list[Path]:
    """The hierarchies systemd uses: name=systemd (v1 and hybrid) and the cgroup2 mount."""
    roots = []
    with open("/proc/self/mounts") as f:
        for line in f:
            _, target, fstype, options, *_ = line.split()
            if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
                roots.append(Path(target))
    return roots


def _make_cgroups(rel: str) -> list[Path]:
    made = []
    for root in _cgroup_roots():
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        made.append(d)
    return made


def _remove_cgroups(dirs: Sequence[Path]) -> None:
    """rmdir a machine's cgroups bottom-up once its processes are gone (cgroupfs has no rm -r)."""
    for top in dirs:
        if not top.exists():
            continue
        subdirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*subdirs, top, top.parent]:  # the parent goes only if no other machine uses it
            with contextlib.suppress(OSError):
                d.rmdir()


def _file_part(host_port: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", host_port)
