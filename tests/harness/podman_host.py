"""Podman on the host with storage of its own: a CLI wrapper and a REST API service.

Nothing here touches the host's own podman storage, /run/libpod or /etc/containers: each
`PodmanStore` has its own root, runroot, tmp dir, containers.conf (runc, explicit ulimits: see
shared/SANDBOX.md) and registries.conf. `PodmanService` runs `podman system service` on a unix
socket over such a store, for tests that need the real REST API without the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from tests.harness import procs

# crun fails on this host's cgroups v1 hybrid; podman's default root ulimits exceed the hard
# limits here; there is no systemd as PID 1 and no journald, so cgroupfs and file events.
HOST_CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{base}/tmp"
[network]
network_config_dir = "{base}/networks"
"""


class PodmanStore:
    """An isolated podman storage on the host; `podman(...)` runs the CLI against it.

    It lives in a short directory of its own under /tmp by default: podman refuses a runroot
    longer than 50 characters, which pytest's tmp_path easily is.
    """

    def __init__(self, base: Path | None = None) -> None:
        base = base or Path(tempfile.mkdtemp(prefix="au-podman-", dir="/tmp"))
        if len(str(base / "runroot")) > 50:
            raise ValueError(f"podman store path too long (runroot must be <= 50 chars): {base}")
        self.base = base
        self.root = base / "root"
        self.runroot = base / "runroot"
        self.tmp_dir = base / "tmp"
        self.conf = base / "containers.conf"
        self.registries_conf = base / "registries.conf"
        self.registries_d = base / "registries.conf.d"
        for d in (self.root, self.runroot, self.tmp_dir, self.registries_d, base / "networks"):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(HOST_CONTAINERS_CONF.format(base=self.base))
        if not self.registries_conf.exists():
            self.registries_conf.write_text("unqualified-search-registries = []\n")

    @property
    def env(self) -> dict[str, str]:
        """Environment for any podman/skopeo process that should see this store's config."""
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.conf)
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.registries_conf)
        return env

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.root), "--runroot", str(self.runroot), *args]

    def podman(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = self.env
        if env:
            full_env.update(env)
        return procs.run(self.argv(*args), env=full_env, check=check, timeout=timeout, input=input)

    def trust_registry(self, host_port: str) -> None:
        """Declare a plain-HTTP registry insecure for this store (and any service over it)."""
        name = host_port.replace(":", "_").replace("/", "_")
        (self.registries_d / f"{name}.conf").write_text(f'[[registry]]\nlocation = "{host_port}"\ninsecure = true\n')
        self._write_registries_conf()

    def _write_registries_conf(self) -> None:
        # CONTAINERS_REGISTRIES_CONF replaces the whole chain, so the drop-ins are inlined.
        parts = ["unqualified-search-registries = []\n"]
        for f in sorted(self.registries_d.glob("*.conf")):
            parts.append(f.read_text())
        self.registries_conf.write_text("\n".join(parts))

    def destroy(self) -> None:
        """Remove every container and image of this store, unmount its layers, delete it."""
        if not self.base.exists():
            return
        with contextlib.suppress(Exception):
            self.podman("rm", "--all", "--force", "--time", "0", check=False, timeout=60)
        # Not `system reset`: it also deletes networks outside this store.
        for args in (("pod", "rm", "--all", "--force"), ("rmi", "--all", "--force")):
            with contextlib.suppress(Exception):
                self.podman(*args, check=False, timeout=120)
        _unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


def _unmount_under(path: Path) -> None:
    """Unmount whatever podman left mounted below `path` (deepest first), so rmtree is safe."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


class PodmanService:
    """`podman system service --time=0` over an isolated store, stopped by its PID."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.store = PodmanStore()
        self.socket = self.store.base / "podman.sock"
        self.log = base / "service.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What podman-py's PodmanClient(base_url=...) and autoupdated's settings take."""
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "service not started"
        return self._proc.pid

    def start(self, timeout: float = 30) -> PodmanService:
        self.socket.unlink(missing_ok=True)
        self._proc = procs.spawn(
            self.store.argv("--log-level=info", "system", "service", "--time=0", self.url),
            log=self.log,
            env=self.store.env,
        )
        procs.on_exit(self.stop)
        procs.wait_for(
            self.ping, timeout=timeout, what=f"podman service on {self.socket}", proc=self._proc, log=self.log
        )
        return self

    def ping(self) -> bool:
        if not self.socket.exists():
            return False
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), timeout=2) as c:
            return c.get("http://d/_ping").text == "OK"

    def podman(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        """The CLI over the service's own storage (containers it creates are seen by the API)."""
        return self.store.podman(*args, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        procs.forget_exit(self.stop)
        if self._proc is not None:
            procs.stop(self._proc, timeout=10)
            self._proc = None
        self.store.destroy()

    def __enter__(self) -> PodmanService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def podman_service(base: Path) -> Iterator[PodmanService]:
    with PodmanService(base) as svc:
        yield svc
