"""The benchmark's world: a booted machine, a registry far away, and a fleet of container units.

Everything is real and comes from the test harness: the systemd-nspawn machine (real systemd,
D-Bus, journald, podman 4.3), a distribution registry on 127.0.0.1 (with a bearer-token service
by default, as Docker Hub and most public registries have), busybox images built and pushed by
host podman.  Both the registry and the token service sit behind a `LatencyProxy`, and the
machine only ever sees the proxies' addresses: every request it makes pays the extra delay.

`Fleet` creates the units the way the harness' `Machine.create_service` does (`podman create`
with the `registry` label, `podman generate systemd --new`, `--cgroups=disabled` for nspawn,
`podman rm`, `systemctl start`), in one script per batch so 200 units take minutes, not more.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import os
import shlex
import shutil
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.ceiling import parse_show
from benchmarks.proxy import LatencyProxy
from tests.harness.images import ImageBuilder, run_forever
from tests.harness.machine import Machine, MachineError
from tests.harness.podman_host import PodmanStore
from tests.harness.registry import AccessEntry, Registry, TokenServer

PUSH_USER, PUSH_PASSWORD = "bench-pusher", "bench-Pa55word"
LABEL = "io.containers.autoupdate"
UNIT_DIR = "/etc/systemd/system"
# autoupdated runs from the read-only /src bind; an installed package has its bytecode compiled,
# so give the machine's Python a writable bytecode cache instead of recompiling on every start.
PYCACHE = "/var/cache/autoupdated-bench-pycache"
AUTOUPDATED_ENV = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": PYCACHE}


class _ProxiedTokenServer(TokenServer):
    """A TokenServer whose realm (what the registry's 401 challenge names) is a proxy's address."""

    realm_override: str | None = None

    @property
    def realm(self) -> str:
        return self.realm_override or super().realm

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> TokenServer:
        super().start()
        # Keep-alive, as real token services have (the harness' handler speaks HTTP/1.0 and
        # closes every connection; its answers carry Content-Length, so HTTP/1.1 is safe).
        assert self._server is not None
        self._server.RequestHandlerClass.protocol_version = "HTTP/1.1"  # type: ignore[attr-defined]
        # The handler writes its headers and its body in two sends: on a kept-alive connection
        # Nagle then holds the body until the client's delayed ACK (40 ms) for every answer
        # after the first.  Real services send at once; podman, on a fresh connection per
        # request, never met it, but a client that reuses connections paid 40 ms per token.
        self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        # socketserver listens with a backlog of 5: a burst of concurrent token requests then
        # loses SYNs and waits a whole second for the retransmit.  Real services don't.
        self._server.socket.listen(512)
        return self


def path_class(entry: AccessEntry) -> str:
    """`manifest HEAD`, `manifest GET`, `blob GET`, `ping GET`, ... for a registry access-log line."""
    path = entry.path.split("?", 1)[0]
    if path in ("/v2/", "/v2"):
        kind = "ping"
    elif "/manifests/" in path:
        kind = "manifest"
    elif "/blobs/" in path:
        kind = "blob"
    elif "/tags/" in path:
        kind = "tags"
    else:
        kind = "other"
    return f"{kind} {entry.method}"


def manifest_reference(entry: AccessEntry) -> str | None:
    """`name:reference` of a manifest request, or None."""
    path = entry.path.split("?", 1)[0]
    if "/manifests/" not in path or not path.startswith("/v2/"):
        return None
    name, _, reference = path[len("/v2/") :].partition("/manifests/")
    return f"{name}:{reference}"


def client_of(user_agent: str) -> str:
    """Who sent a request: `autoupdated` (its own User-Agent), else `podman` (the CLI, or the
    podman service pulling for autoupdated: containers/image's agent)."""
    return "autoupdated" if user_agent.startswith("autoupdated/") else "podman"


def token_scope(path: str) -> str:
    query = urllib.parse.urlsplit(path).query
    return " ".join(sorted(urllib.parse.parse_qs(query).get("scope", [])))


@dataclass
class Traffic:
    """What one tool run asked of the registry and the token service."""

    by_class: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    manifest_heads_per_ref: dict[str, int] = field(default_factory=dict)
    ok_heads_per_ref: dict[str, int] = field(default_factory=dict)  # HEADs answered 200
    token_requests: int = 0
    token_scopes: dict[str, int] = field(default_factory=dict)
    # token requests by who sent them (User-Agent seen by the proxy): the tool itself, or the
    # podman service pulling for autoupdated
    token_by_client: dict[str, int] = field(default_factory=dict)
    own_token_scopes: dict[str, int] = field(default_factory=dict)  # scopes the tool asked itself
    registry_by_client: dict[str, int] = field(default_factory=dict)
    proxy_connections: int = 0
    token_connections: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_class.values())

    def count(self, kind: str) -> int:
        return self.by_class.get(kind, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_class": dict(sorted(self.by_class.items())),
            "statuses": dict(sorted(self.statuses.items())),
            "total": self.total,
            "token_requests": self.token_requests,
            "max_token_requests_per_scope": max(self.token_scopes.values(), default=0),
            "token_by_client": dict(sorted(self.token_by_client.items())),
            "own_token_requests": sum(self.own_token_scopes.values()),
            "max_own_token_requests_per_scope": max(self.own_token_scopes.values(), default=0),
            "registry_by_client": dict(sorted(self.registry_by_client.items())),
            "distinct_manifest_refs_headed": len(self.ok_heads_per_ref),
            "max_heads_per_ref": max(self.manifest_heads_per_ref.values(), default=0),
            "max_ok_heads_per_ref": max(self.ok_heads_per_ref.values(), default=0),
            "proxy_connections": self.proxy_connections,
            "token_connections": self.token_connections,
        }


class CpuMeter:
    """CPU time of this process and everything it starts from now on (the machine with all its
    units, the registry, the proxies), from a cgroup-v1 cpuacct group of its own: other load on
    the host does not count.  `usage()` is None where there is no cpuacct hierarchy."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self._home: Path | None = None
        root = _cpuacct_root()
        if root is None:
            return
        own = _own_cgroup("cpuacct")
        if own is None:
            return
        home = root / own.lstrip("/")
        group = home / f"autoupdated-bench-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
            return
        self.dir, self._home = group, home

    def usage(self) -> float | None:
        if self.dir is None:
            return None
        try:
            return int((self.dir / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def coverage(self, machine_pid: int) -> dict[str, Any]:
        """Whether every process of the machine (podman, conmon, crun, systemd, autoupdated...)
        counts in this group: the machine's processes by the cpuacct group they are in."""
        if self.dir is None:
            return {"available": False}
        root = _cpuacct_root()
        inside, outside = 0, []
        for entry in machine_processes(machine_pid):
            with contextlib.suppress(OSError):
                path = next(
                    line.split(":", 2)[2]
                    for line in (entry / "cgroup").read_text().splitlines()
                    if "cpuacct" in line.split(":", 2)[1].split(",")
                )
                if root is not None and (root / path.lstrip("/")).is_relative_to(self.dir):
                    inside += 1
                else:
                    outside.append((entry / "comm").read_text().strip())
        return {"available": True, "inside": inside, "outside": len(outside), "outside_names": sorted(set(outside))}

    def close(self) -> None:
        """Back to the original group; remove ours (once everything started in it is gone)."""
        if self.dir is None or self._home is None:
            return
        with contextlib.suppress(OSError):
            (self._home / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(50):
            try:
                self.dir.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        self.dir = None


def machine_processes(machine_pid: int) -> Iterator[Path]:
    """`/proc/PID` of every process in the PID namespace of the machine whose leader is
    `machine_pid` (processes that vanish while we look are skipped)."""
    target_ns = os.readlink(f"/proc/{machine_pid}/ns/pid")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == target_ns:
                    yield entry


def _cpuacct_root() -> Path | None:
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, target, fstype, options, *_ = line.split()
            if fstype == "cgroup" and "cpuacct" in options.split(","):
                return Path(target)
    return None


def _own_cgroup(controller: str) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


class BenchEnv:
    """Registry (+ token service) behind latency proxies, an image builder, a booted machine."""

    def __init__(
        self, *, delay: float = 0.030, auth: str = "token", workdir: Path | None = None, platform: str = "bookworm"
    ) -> None:
        if auth not in ("token", "none"):
            raise ValueError(f"auth must be 'token' or 'none', not {auth!r}")
        self.delay = delay
        self.auth = auth
        self.platform = platform  # the machine's: bookworm (podman 4.3) or trixie (podman 5.4)
        # Short: podman's runroot path must stay under 50 characters.
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="aub-", dir="/tmp"))
        self.tokens: _ProxiedTokenServer | None = None
        self.token_proxy: LatencyProxy | None = None
        self.registry: Registry | None = None
        self.proxy: LatencyProxy | None = None
        self.builder: ImageBuilder | None = None
        self.machine: Machine | None = None
        self._sets = itertools.count()
        self.cpu = CpuMeter()

    # -- lifecycle -----------------------------------------------------------------------

    def start_registry(self) -> BenchEnv:
        """Token service, registry, their proxies and the image builder (no machine yet)."""
        creds: tuple[str, str] | None = None
        if self.auth == "token":
            tokens = _ProxiedTokenServer(self.workdir / "tokens", users={PUSH_USER: PUSH_PASSWORD})
            tokens.start()
            self.tokens = tokens
            self.token_proxy = LatencyProxy("127.0.0.1", tokens.port, delay=self.delay).start()
            tokens.realm_override = f"http://{self.token_proxy.host_port}/token"
            creds = (PUSH_USER, PUSH_PASSWORD)
        self.push_creds = creds
        self.registry = Registry(self.workdir / "registry", token=self.tokens).start()
        self.proxy = LatencyProxy("127.0.0.1", self.registry.port, delay=self.delay).start()
        self.builder = ImageBuilder(self.workdir / "images", store=PodmanStore(self.workdir / "ps"))
        return self

    def boot_machine(self) -> Machine:
        """A fresh machine that trusts the proxy (plain HTTP) and caches bytecode."""
        assert self.proxy is not None
        machine = Machine.boot(platform=self.platform)
        machine.trust_registry(self.proxy.host_port, insecure=True)
        machine.run("mkdir", "-p", PYCACHE)
        self.machine = machine
        return machine

    def stop_machine(self) -> None:
        if self.machine is not None:
            self.machine.stop()
            self.machine = None

    def stop(self) -> None:
        """Everything, by PID, newest first; safe to call twice."""
        errors: list[BaseException] = []
        for stop in (
            self.stop_machine,
            lambda: self.builder.destroy() if self.builder else None,
            lambda: self.proxy.stop() if self.proxy else None,
            lambda: self.registry.stop() if self.registry else None,
            lambda: self.token_proxy.stop() if self.token_proxy else None,
            lambda: self.tokens.stop() if self.tokens else None,
        ):
            try:
                stop()
            except Exception as err:
                errors.append(err)
        self.builder = self.proxy = self.registry = self.token_proxy = self.tokens = None
        self.cpu.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self) -> BenchEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- images --------------------------------------------------------------------------

    def ref(self, repo: str) -> str:
        """The name the machine uses: through the latency proxy."""
        assert self.proxy is not None
        return f"{self.proxy.host_port}/bench/{repo}:latest"

    def push_ref(self, repo: str) -> str:
        assert self.registry is not None
        return f"{self.registry.host_port}/bench/{repo}:latest"

    def build_set(self, repos: Sequence[str]) -> dict[str, str]:
        """A new image for each repo (distinct digests), built locally: repo -> local ref."""
        assert self.builder is not None
        n = next(self._sets)
        return {repo: self.builder.build("good", f"{repo}-set{n}-{os.getpid()}") for repo in repos}

    def push_set(self, built: dict[str, str], workers: int = 4) -> dict[str, str]:
        """Push a built set to the registry (directly, not through the proxy): repo -> digest."""
        assert self.builder is not None
        builder = self.builder

        def push(item: tuple[str, str]) -> tuple[str, str]:
            repo, local = item
            return repo, builder.push(local, self.push_ref(repo), self.push_creds)

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            pushed = dict(pool.map(push, built.items()))
        builder.remove(*built.values())
        return pushed

    def publish(self, repos: Sequence[str]) -> dict[str, str]:
        """Build and push a new image for every repo; returns repo -> pushed digest."""
        return self.push_set(self.build_set(repos))

    # -- traffic -------------------------------------------------------------------------

    def mark(self) -> None:
        assert self.registry is not None and self.proxy is not None
        self.registry.mark()
        self.proxy.reset_stats()
        if self.token_proxy is not None:
            self.token_proxy.reset_stats()
        if self.tokens is not None:
            self.tokens.clear()

    def traffic(self) -> Traffic:
        assert self.registry is not None and self.proxy is not None
        entries = self.registry.requests(settle=0.3)
        traffic = Traffic()
        classes: Counter[str] = Counter(path_class(e) for e in entries)
        traffic.by_class = dict(classes)
        traffic.statuses = dict(Counter(str(e.status) for e in entries))
        heads: Counter[str] = Counter()
        ok_heads: Counter[str] = Counter()
        for e in entries:
            if e.method == "HEAD" and (ref := manifest_reference(e)):
                heads[ref] += 1
                if e.status == 200:
                    ok_heads[ref] += 1
        traffic.manifest_heads_per_ref = dict(heads)
        traffic.ok_heads_per_ref = dict(ok_heads)
        if self.tokens is not None:
            with self.tokens.lock:
                requests = list(self.tokens.requests)
            traffic.token_requests = len(requests)
            scopes: Counter[str] = Counter(" ".join(sorted(r.scope)) for r in requests)
            traffic.token_scopes = dict(scopes)
        traffic.proxy_connections = self.proxy.stats()["connections"]
        traffic.registry_by_client = dict(Counter(client_of(r.user_agent) for r in self.proxy.requests()))
        if self.token_proxy is not None:
            seen = self.token_proxy.requests()
            traffic.token_connections = self.token_proxy.stats()["connections"]
            traffic.token_by_client = dict(Counter(client_of(r.user_agent) for r in seen))
            traffic.own_token_scopes = dict(
                Counter(token_scope(r.path) for r in seen if client_of(r.user_agent) == "autoupdated")
            )
        return traffic


@dataclass
class UnitState:
    invocation: str
    active: str


@dataclass
class Snapshot:
    """The fleet as the machine sees it: units, containers and the images their names point to."""

    units: dict[str, UnitState]
    container_image: dict[str, str]  # container name -> image ID
    name_image: dict[str, str]  # image name -> image ID
    image_digest: dict[str, str]  # image ID -> digest


class Fleet:
    """`per_image` units for each of `images` repositories, all with the `registry` policy.

    `extend` grows it (more repositories, more units), so one machine serves several sizes."""

    def __init__(
        self,
        env: BenchEnv,
        images: int,
        per_image: int,
        prefix: str = "b",
        stop_seconds: float | tuple[float, float] = 0.0,
    ) -> None:
        self.env = env
        # How long each service takes to shut down on SIGTERM (0: at once, the CPU-bound case;
        # a real service drains connections and flushes state first).  A range (low, high)
        # spreads the units evenly over it: "services that take up to a second to stop".
        self.stop_seconds = stop_seconds
        self.prefix = prefix
        self.per_image = per_image
        self.repos: list[str] = []
        self.containers: list[str] = []
        self.repo_of: dict[str, str] = {}
        self.units: list[str] = []
        self.digests: dict[str, str] = {}
        self._pending: list[str] = []  # containers added but not created yet
        self._pending_repos: list[str] = []
        self.extend(images, images * per_image)

    def stop_time(self, index: int) -> float:
        """The stop time of the `index`th unit: fixed, or evenly over the range, 5 steps."""
        if isinstance(self.stop_seconds, tuple):
            low, high = self.stop_seconds
            return round(low + (high - low) * (index % 5) / 4, 3)
        return self.stop_seconds

    def extend(self, images: int, containers: int) -> None:
        """Grow to `images` repositories and `containers` units (created by the next `create`):
        new units go to the new repositories first, then round the whole list, so every
        repository has a unit."""
        new_repos = [f"app{i:03d}" for i in range(len(self.repos), images)]
        self.repos += new_repos
        self._pending_repos += new_repos
        order = new_repos + [r for r in self.repos if r not in new_repos]
        start = len(self.containers)
        for i in range(start, containers):
            # Never names that could be container ID prefixes ("c142" is hex): the units run
            # `podman run --replace --name NAME`, and podman looks NAME up as a name *or an ID
            # prefix*, so it would remove another unit's container whose ID starts with "c142".
            name = f"bench-{self.prefix}{i:03d}"
            self.containers.append(name)
            self.repo_of[name] = order[(i - start) % len(order)]
            self._pending.append(name)
        self.units = [f"container-{name}.service" for name in self.containers]

    @property
    def image_of_unit(self) -> dict[str, str]:
        return {f"container-{name}.service": repo for name, repo in self.repo_of.items()}

    @property
    def machine(self) -> Machine:
        assert self.env.machine is not None
        return self.env.machine

    def create(self, *, batch: int = 10, timeout: float = 600) -> float:
        """Push the new repositories' first images, pull them in the machine, create and start
        every unit not created yet."""
        t0 = time.monotonic()
        repos, self._pending_repos = self._pending_repos, []
        self.digests.update(self.env.publish(repos))
        m = self.machine
        # Pull in batches of 8 so the machine is not swamped.
        for group in _chunks(repos, 8):
            pulls = " ".join(f"podman pull -q {shlex.quote(self.env.ref(r))} >/dev/null &" for r in group)
            m.sh(f"{pulls} wait", timeout=timeout)
        names, self._pending = self._pending, []
        for group in _chunks(names, batch):
            lines = ["set -e", f"cd {UNIT_DIR}"]
            for name in group:
                create = ["podman", "create", "--name", name, "--label", f"{LABEL}=registry"]
                command = run_forever(self.stop_time(self.containers.index(name)))
                lines.append(shlex.join([*create, self.env.ref(self.repo_of[name]), *command]) + " >/dev/null")
                lines.append(shlex.join(["podman", "generate", "systemd", "--new", "--files", "--name", name]))
                lines.append(shlex.join(["podman", "rm", "-t", "0", "-f", name]) + " >/dev/null")
                lines.append(f"sed -i 's/--cgroups=no-conmon/--cgroups=disabled/g' container-{name}.service")
            lines.append("systemctl daemon-reload")
            units = [f"container-{name}.service" for name in group]
            lines.append(shlex.join(["systemctl", "start", *units]))
            r = m.sh("\n".join(lines), timeout=timeout, check=False)
            if r.returncode != 0:
                raise MachineError(f"creating units {group[0]}..{group[-1]} failed:\n{r.stdout}\n{r.stderr}")
        self.wait_active(timeout=timeout)
        return time.monotonic() - t0

    def wait_active(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, UnitState] = {}
        while time.monotonic() < deadline:
            states = self.unit_states()
            if all(s.active == "active" for s in states.values()):
                return
            if any(s.active == "failed" for s in states.values()):
                break
            time.sleep(0.5)
        bad = {u: s.active for u, s in states.items() if s.active != "active"}
        raise MachineError(f"units not active: {bad}")

    def unit_states(self) -> dict[str, UnitState]:
        states: dict[str, UnitState] = {}
        for group in _chunks(self.units, 100):
            out = self.machine.systemctl("show", "-p", "Id,InvocationID,ActiveState", *group).stdout
            for block in out.strip().split("\n\n"):
                props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
                states[props["Id"]] = UnitState(props.get("InvocationID", ""), props.get("ActiveState", ""))
        return states

    def show(self, props: Sequence[str]) -> dict[str, dict[str, str]]:
        """`systemctl show -p PROPS` of every unit: unit -> properties."""
        found: dict[str, dict[str, str]] = {}
        for group in _chunks(self.units, 100):
            out = self.machine.systemctl("show", "-p", ",".join(["Id", *props]), *group).stdout
            found.update(parse_show(out))
        return found

    def snapshot(self) -> Snapshot:
        m = self.machine
        containers = {}
        for line in m.podman("ps", "--no-trunc", "--format", "{{.Names}}\t{{.ImageID}}").stdout.splitlines():
            name, _, image_id = line.partition("\t")
            containers[name] = image_id.strip()
        images = json.loads(m.podman("images", "--format", "json").stdout or "[]")
        name_image: dict[str, str] = {}
        image_digest: dict[str, str] = {}
        for image in images:
            image_digest[image["Id"]] = image.get("Digest", "")
            for name in image.get("Names") or []:
                name_image[name] = image["Id"]
        return Snapshot(self.unit_states(), containers, name_image, image_digest)

    def verify_current(self, snapshot: Snapshot | None = None) -> list[str]:
        """Problems with the claim 'every container runs the newest pushed image, every unit is
        active' (empty when it holds)."""
        snap = snapshot or self.snapshot()
        problems = []
        for unit, state in snap.units.items():
            if state.active != "active":
                problems.append(f"{unit} is {state.active}")
        for name in self.containers:
            repo = self.repo_of[name]
            image_id = snap.container_image.get(name)
            if image_id is None:
                problems.append(f"container {name} is not running")
                continue
            digest = snap.image_digest.get(image_id, "")
            if digest != self.digests[repo]:
                problems.append(f"container {name} runs {digest or image_id[:12]}, not {self.digests[repo]}")
        return problems

    def publish(self) -> dict[str, str]:
        """A new image for every repo of the fleet (the 'something new' of scenario b)."""
        self.digests = self.env.publish(self.repos)
        return self.digests

    def prune(self) -> None:
        """Drop images no container uses (outside any timed window)."""
        self.machine.podman("image", "prune", "-f", check=False, timeout=300)

    def restarted(self, before: dict[str, UnitState], after: dict[str, UnitState]) -> int:
        return sum(1 for unit, state in after.items() if unit in before and before[unit].invocation != state.invocation)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextlib.contextmanager
def bench_env(*, delay: float = 0.030, auth: str = "token") -> Any:
    env = BenchEnv(delay=delay, auth=auth)
    try:
        env.start_registry()
        yield env
    finally:
        env.stop()
