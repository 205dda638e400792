"""Measurements besides the A/B runs: start-up cost of the CLI, and what an idle daemon costs.

Start-up (in a machine with no labelled container): `python -X importtime` of `autoupdated
check`, and the wall time of `autoupdated --help`, of a `check` that finds nothing, of
`python -c pass` and of `podman auto-update` with nothing to do, each timed inside the machine.

The daemon: `autoupdated run --config FILE` as a transient systemd service (Type=notify,
WatchdogSec=60s, as systemd/autoupdated.service has), an interval schedule, a run at start and
two `autoupdated trigger --wait`, so three runs over the whole fleet.  Then, idle: its memory
(VmRSS, VmHWM, Pss) and its wake-ups over a window: scheduler run counts of every thread
(/proc/PID/task/*/schedstat) and context switches, then `strace -f -c` over a second window
for the syscalls behind them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.environment import AUTOUPDATED_ENV, PYCACHE, machine_processes
from tests.harness.machine import VENV_PYTHON, Machine

DAEMON_UNIT = "autoupdated-bench.service"
DAEMON_CONFIG = "/etc/autoupdated-bench.toml"
DAEMON_TOML = """\
schedule = "every 1h"
randomized_delay = 0
run_on_start = true
persistent = false
state_dir = "/var/lib/autoupdated-bench"
control_socket = "/run/autoupdated-bench/control.sock"
log_level = "info"
"""

_TIMER = r"""
import json, statistics, subprocess, sys, time
runs = int(sys.argv[1])
commands = json.loads(sys.argv[2])
out = {}
for name, argv in commands.items():
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
        if p.returncode not in (0, 2):
            print(json.dumps({"error": name, "stderr": p.stderr.decode()[-2000:]})); sys.exit(1)
    out[name] = {"median": statistics.median(times), "min": min(times), "runs": runs}
print(json.dumps(out))
"""


UNIT_FILE = Path(__file__).resolve().parents[1] / "systemd" / "autoupdated.service"


def unit_environment(unit_file: Path = UNIT_FILE) -> dict[str, str]:
    """The variables the shipped unit's `Environment=` lines set (the allocator among them), so
    the daemon measured here runs as the installed one does."""
    env: dict[str, str] = {}
    for line in unit_file.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "Environment":
            for item in shlex.split(value):
                name, sep, setting = item.partition("=")
                if sep:
                    env[name] = setting
    return env


def _au_env() -> dict[str, str]:
    return {"PYTHONPATH": "/src", "PYTHONUNBUFFERED": "1", **AUTOUPDATED_ENV}


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The daemon's environment: the unit's, then the benchmark's (its code and bytecode cache),
    then `extra` (`--daemon-env`, for an A/B of one variable)."""
    return {**unit_environment(), **_au_env(), **(extra or {})}


def parse_importtime(stderr: str) -> dict[str, Any]:
    """Total import time and the heaviest top-level imports from `-X importtime` output."""
    total_us = 0
    top: list[tuple[str, int]] = []
    pattern = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
    for line in stderr.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        self_us, cumulative_us, indent, name = int(match[1]), int(match[2]), len(match[3]), match[4]
        total_us += self_us
        if indent == 1:
            top.append((name, cumulative_us))
    heaviest = sorted(top, key=lambda item: item[1], reverse=True)[:10]
    return {
        "total_ms": round(total_us / 1000, 1),
        "modules": sum(1 for line in stderr.splitlines() if pattern.match(line)),
        "top_level_ms": {name: round(us / 1000, 1) for name, us in heaviest},
    }


def startup(machine: Machine, *, runs: int = 7) -> dict[str, Any]:
    """Import time and start-up wall times, measured inside the machine (no labelled container)."""
    env = _au_env()
    au = [VENV_PYTHON, "-m", "autoupdated"]
    machine.run(*au, "--help", env=env)  # compiles the bytecode cache once
    machine.run(*au, "check", env=env, check=False)
    imports = machine.run(VENV_PYTHON, "-X", "importtime", "-m", "autoupdated", "check", env=env, check=False)
    modules_check = parse_importtime(imports.stderr)
    help_imports = machine.run(VENV_PYTHON, "-X", "importtime", "-m", "autoupdated", "--help", env=env)
    commands = {
        "python -c pass": [VENV_PYTHON, "-c", "pass"],
        "autoupdated --help": [*au, "--help"],
        "autoupdated check (no containers)": [*au, "check"],
        "podman auto-update (no containers)": ["podman", "auto-update"],
    }
    r = machine.run(VENV_PYTHON, "-c", _TIMER, str(runs), json.dumps(commands), env=env, timeout=600)
    walls = json.loads(r.stdout)
    if "error" in walls:
        raise RuntimeError(f"start-up timing failed: {walls}")
    return {
        "import_check": modules_check,
        "import_help_ms": parse_importtime(help_imports.stderr)["total_ms"],
        "wall_s": {name: round(v["median"], 3) for name, v in walls.items()},
        "runs": runs,
        "bytecode_cache": PYCACHE,
    }


# -- the daemon ------------------------------------------------------------------------------


def _host_pid(machine: Machine, inner_pid: int) -> int:
    """The host PID of a process the machine knows as `inner_pid` (NSpid's last field)."""
    for entry in machine_processes(machine.pid):
        with contextlib.suppress(OSError):
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("NSpid:") and int(line.split()[-1]) == inner_pid:
                    return int(entry.name)
    raise RuntimeError(f"no host process for PID {inner_pid} of machine {machine.name}")


def _status_fields(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kib(value: str) -> int:
    return int(value.split()[0])


def memory(pid: int) -> dict[str, float]:
    status = _status_fields(pid)
    rollup = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, value = line.partition(":")
            rollup[key] = value.strip()
    mb = 1024.0
    return {
        "rss_mb": round(_kib(status["VmRSS"]) / mb, 1),
        "hwm_mb": round(_kib(status["VmHWM"]) / mb, 1),
        "pss_mb": round(_kib(rollup["Pss"]) / mb, 1) if "Pss" in rollup else -1.0,
        "anon_mb": round(_kib(status.get("RssAnon", "0 kB")) / mb, 1),
        # the interpreter's and libraries' mapped files: page cache on a disk-backed host, shmem
        # here (the machine's root is a tmpfs)
        "mapped_files_mb": round((_kib(status.get("RssFile", "0 kB")) + _kib(status.get("RssShmem", "0 kB"))) / mb, 1),
        "threads": int(status["Threads"]),
        # FDSize: the file-descriptor table's size, which only grows: the high-water mark of open files
        "fd_table": int(status.get("FDSize", "0")),
        "fds_open": len(list(Path(f"/proc/{pid}/fd").iterdir())),
    }


def _sched_sample(pid: int) -> dict[str, tuple[int, int, int]]:
    """Per thread: (times scheduled in, voluntary, involuntary context switches)."""
    sample = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            runs = int((task / "schedstat").read_text().split()[2])
            status = {}
            for line in (task / "status").read_text().splitlines():
                key, _, value = line.partition(":")
                status[key] = value.strip()
            name = (task / "comm").read_text().strip()
            sample[f"{task.name} {name}"] = (
                runs,
                int(status["voluntary_ctxt_switches"]),
                int(status["nonvoluntary_ctxt_switches"]),
            )
    return sample


def wakeups(pid: int, window: float) -> dict[str, Any]:
    before = _sched_sample(pid)
    time.sleep(window)
    after = _sched_sample(pid)
    per_thread = {}
    for key, (runs, vol, invol) in after.items():
        b = before.get(key, (0, 0, 0))
        per_thread[key] = {"scheduled": runs - b[0], "voluntary": vol - b[1], "involuntary": invol - b[2]}
    total = sum(v["scheduled"] for v in per_thread.values())
    wakeups = sum(v["voluntary"] for v in per_thread.values())  # each sleep ended by a wake-up
    return {
        "window_s": window,
        "scheduled_total": total,
        "per_minute": round(total * 60 / window, 1),
        "wakeups": wakeups,
        "wakeups_per_minute": round(wakeups * 60 / window, 1),
        "per_thread": {k: v for k, v in per_thread.items() if v["scheduled"]},
        "threads": len(after),
    }


def strace_window(pid: int, window: float, workdir: Path) -> dict[str, Any]:
    """`strace -f -c -p PID` for `window` s: calls per syscall (empty dict when strace is absent)."""
    if not os.path.exists("/usr/bin/strace"):
        return {"available": False}
    out = workdir / "strace.txt"
    proc = subprocess.Popen(
        ["/usr/bin/strace", "-f", "-c", "-o", str(out), "-p", str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(window)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    calls: dict[str, int] = {}
    text = out.read_text() if out.exists() else ""
    for line in text.splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and parts[0].replace(".", "", 1).isdigit() and parts[-1] != "total":
            with contextlib.suppress(ValueError):
                calls[parts[-1]] = int(parts[3])
    return {"available": True, "window_s": window, "syscalls": dict(sorted(calls.items(), key=lambda kv: -kv[1]))}


class DaemonSession:
    """`autoupdated run` as a transient service (Type=notify, WatchdogSec=60s): start it, have it
    run (`trigger --wait`), read each run's own record (`status --format json`: its duration and
    phases, measured by the daemon from the run's start to its end, no process start-up in it),
    then watch it idle."""

    def __init__(self, machine: Machine, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.machine = machine
        self.workdir = workdir
        self.env = daemon_env(env)
        self.au = [VENV_PYTHON, "-m", "autoupdated"]

    def start(self) -> dict[str, Any]:
        """Start it and wait for its first run (run_on_start); that run's record."""
        m = self.machine
        m.write(DAEMON_CONFIG, DAEMON_TOML)
        setenv = [f"--setenv={key}={value}" for key, value in self.env.items()]
        m.run(
            "systemd-run",
            f"--unit={DAEMON_UNIT}",
            "--property=Type=notify",
            "--property=NotifyAccess=main",
            "--property=WatchdogSec=60s",
            *setenv,
            *self.au,
            "run",
            "--config",
            DAEMON_CONFIG,
            timeout=120,
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = self.status()
            if (status.get("daemon") or {}).get("runs_completed", 0) >= 1:
                return dict(status.get("last_run") or {})
            time.sleep(0.5)
        raise RuntimeError("the daemon's first run did not finish within 600 s")

    def status(self) -> dict[str, Any]:
        out = self.machine.run(*self.au, "status", "--config", DAEMON_CONFIG, "--format", "json", env=self.env)
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def trigger(self) -> tuple[float, dict[str, Any]]:
        """One run now: (`trigger --wait`'s wall time from the host, the run's own record)."""
        t0 = time.monotonic()
        r = self.machine.run(
            *self.au, "trigger", "--wait", "--config", DAEMON_CONFIG, env=self.env, check=False, timeout=1800
        )
        took = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"autoupdated trigger --wait failed: {r.stdout}{r.stderr}")
        return took, dict(self.status().get("last_run") or {})

    def host_pid(self) -> int:
        return _host_pid(self.machine, int(self.machine.unit_property(DAEMON_UNIT, "MainPID")))

    def idle(self, window: float, *, strace: bool = True) -> dict[str, Any]:
        """Memory once the last run's replies and log lines are out, then wake-ups while idle."""
        pid = self.host_pid()
        time.sleep(2.0)
        result: dict[str, Any] = {"memory": memory(pid), "idle": wakeups(pid, window)}
        result["strace"] = strace_window(pid, window, self.workdir) if strace else {"available": False}
        return result

    def module_floor(self) -> dict[str, float]:
        """The RSS of a process that imports what the daemon runs on and does nothing else: the
        floor under the idle daemon's RSS (what no run's clean-up can give back)."""
        return module_floor(self.machine, self.env)

    def stop(self) -> None:
        self.machine.systemctl("stop", DAEMON_UNIT, check=False, timeout=180)
        self.machine.systemctl("reset-failed", DAEMON_UNIT, check=False)


def daemon(
    machine: Machine,
    workdir: Path,
    *,
    window: float = 30.0,
    runs: int = 3,
    before_last: Callable[[], object] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start the daemon, let it do `runs` runs, then measure it idle; stop it.

    `before_last` (e.g. publishing a new image for every repo) runs before the last run, so the
    peak (VmHWM, the fd table) covers pulls, restarts and the health gate too."""
    session = DaemonSession(machine, workdir, env)
    session.start()
    try:
        durations: list[float] = []
        for number in range(runs - 1):
            if before_last is not None and number == runs - 2:
                before_last()
            took, _ = session.trigger()
            durations.append(took)
        status = session.status()
        watched = session.idle(window)
        last = status.get("last_run") or {}
        return {
            "runs_completed": (status.get("daemon") or {}).get("runs_completed"),
            "last_run_summary": last.get("summary"),
            "trigger_wait_s": [round(d, 2) for d in durations],
            "trigger_wait_median_s": round(statistics.median(durations), 2) if durations else None,
            **watched,
            "watchdog_sec": 60,
        }
    finally:
        session.stop()


# -- a tool's own CPU ---------------------------------------------------------------------------

# Runs ARGV inside the machine and reports, as the last line of its stderr, the wall time around
# it and the CPU time (user + sys) of ARGV and every child it waited for (RUSAGE_CHILDREN): a
# tool's own CPU, apart from the podman service's, conmon's and the units' (other processes).
RUSAGE_MARK = "BENCH-RUSAGE "
RUSAGE_WRAPPER = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
code = subprocess.call(sys.argv[1:])
wall = time.perf_counter() - t0
r = resource.getrusage(resource.RUSAGE_CHILDREN)
figures = {"wall_s": wall, "user_s": r.ru_utime, "sys_s": r.ru_stime, "maxrss_kb": r.ru_maxrss}
sys.stderr.write("\nBENCH-RUSAGE " + json.dumps(figures) + "\n")
sys.exit(code)
"""


def split_rusage(stderr: str) -> tuple[str, dict[str, float] | None]:
    """(the tool's own stderr, the wrapper's figures) from a wrapped run's stderr."""
    head, mark, tail = stderr.rpartition(RUSAGE_MARK)
    if not mark:
        return stderr, None
    try:
        figures = json.loads(tail.strip().splitlines()[0])
    except (ValueError, IndexError):
        return stderr, None
    return head.rstrip("\n"), {key: float(value) for key, value in figures.items()}


_PHASES = re.compile(r"^run phases: (?P<steps>[^;]*)(?:; (?P<sizes>.*))?$", re.M)


def parse_phases(stderr: str) -> dict[str, Any] | None:
    """`check --timings`' line: {"phases": {step: s}, "sizes": {what: n}}, or None."""
    match = _PHASES.search(stderr)
    if match is None:
        return None
    phases = {}
    for part in match["steps"].split(", "):
        name, _, value = part.partition(" ")
        phases[name] = float(value.removesuffix(" s"))
    sizes = {}
    for part in (match["sizes"] or "").split(", "):
        if part:
            count, _, name = part.partition(" ")
            sizes[name] = int(count)
    return {"phases": phases, "sizes": sizes}


# Every module the daemon has loaded once it has run: its own (all of autoupdated but the CLI's
# one-shot commands are reachable from these) and the libraries they import at the top.
_FLOOR_SCRIPT = """
import ctypes, importlib, pkgutil
import autoupdated
for info in pkgutil.walk_packages(autoupdated.__path__, "autoupdated."):
    if not info.name.startswith(("autoupdated.__main__", "autoupdated.data")):
        importlib.import_module(info.name)
# what httpx loads on its first client and connection: part of what any run leaves
import httpcore, h11, anyio._backends._asyncio  # noqa: E401
ctypes.CDLL("libc.so.6").malloc_trim(0)
fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(fields["VmRSS"].split()[0]), int(fields["RssAnon"].split()[0]))
"""


def module_floor(machine: Machine, env: dict[str, str]) -> dict[str, float]:
    """RSS (MB) of a fresh interpreter that has imported every autoupdated module (and so every
    library the daemon runs on, with what httpx loads on first use), trimmed, with no run done:
    the idle daemon cannot go below it."""
    out = machine.run(VENV_PYTHON, "-c", _FLOOR_SCRIPT, env=env).stdout.split()
    return {"rss_mb": round(int(out[0]) / 1024, 1), "anon_mb": round(int(out[1]) / 1024, 1)}
