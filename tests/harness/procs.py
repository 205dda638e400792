"""Process helpers for the harness: start in own sessions, stop by PID, never leak.

Every long-lived process a harness starts goes through `spawn`, which records it; `stop` ends
it by its PID (TERM, then KILL after a bound) and an atexit hook stops whatever is left if a
session crashes. Nothing here ever looks processes up by name.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_live: dict[int, subprocess.Popen[bytes]] = {}
_cleanups: list[Callable[[], None]] = []


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message carries the output, so a failing test says why."""

    def __str__(self) -> str:
        out = (self.stdout or "").strip() if isinstance(self.stdout, str) else ""
        err = (self.stderr or "").strip() if isinstance(self.stderr, str) else ""
        cmd = " ".join(map(str, self.cmd)) if isinstance(self.cmd, list | tuple) else str(self.cmd)
        parts = [f"command {cmd!r} exited {self.returncode}"]
        if out:
            parts.append(f"stdout:\n{out[-4000:]}")
        if err:
            parts.append(f"stderr:\n{err[-4000:]}")
        return "\n".join(parts)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = 120,
    input: str | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text IO whose timeout kills the whole process group it started.

    Plain subprocess.run only kills the direct child: `nsenter` forks into the machine's PID
    namespace, so its grandchild would outlive the timeout.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(list(argv), timeout or 0, out, err) from None
    finally:
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
    result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, list(argv), out, err)
    return result


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-lived process in its own session, stdin /dev/null, output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    with _lock:
        _live[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
    """Stop a spawned process by its PID: `sig`, then SIGKILL after `timeout`; reap it.

    Whatever else is left in the session it was started in (its own process group, created by
    `spawn`) is killed too, so helpers it forked do not linger.
    """
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        _kill_group(proc.pid, signal.SIGKILL)
        return proc.returncode
    finally:
        with _lock:
            _live.pop(proc.pid, None)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def on_exit(fn: Callable[[], None]) -> Callable[[], None]:
    """Register a cleanup that runs at interpreter exit unless `forget_exit` removes it first."""
    with _lock:
        _cleanups.append(fn)
    return fn


def forget_exit(fn: Callable[[], None]) -> None:
    with _lock, contextlib.suppress(ValueError):
        _cleanups.remove(fn)


@atexit.register
def _stop_everything() -> None:
    """Last resort after a crash: registered cleanups (newest first), then every live process."""
    with _lock:
        cleanups = list(reversed(_cleanups))
        _cleanups.clear()
    for fn in cleanups:
        with contextlib.suppress(Exception):
            fn()
    with _lock:
        procs = list(_live.values())
    for proc in procs:
        with contextlib.suppress(Exception):
            stop(proc, timeout=5)


def starttime(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), None if it is gone or a
    zombie. With the PID it names one process for good: a reused PID has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt (where nothing else handles them), so a
    killed test run still tears its fixtures down and runs the atexit cleanups: by default
    Python dies on SIGTERM without either, leaving machines and registries behind."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, interrupt)


def live_pids() -> list[int]:
    """PIDs of spawned processes not yet stopped (for tests of the harness itself)."""
    with _lock:
        return [pid for pid, p in _live.items() if p.poll() is None]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with context on timeout.

    If `proc` dies meanwhile, fail at once and show the tail of `log`.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) while waiting for {what}{_tail(log)}")
        if time.monotonic() >= deadline:
            extra = f"; last error: {last_exc!r}" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{extra}{_tail(log)}")
        time.sleep(interval)


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- tail of {log} ---\n" + "\n".join(text)


def tail(log: Path, lines: int = 40) -> str:
    """Last lines of a log file, for error messages."""
    return _tail(log, lines)


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


__all__ = [
    "CommandError",
    "forget_exit",
    "free_port",
    "install_signal_handlers",
    "live_pids",
    "on_exit",
    "run",
    "spawn",
    "starttime",
    "stop",
    "tail",
    "wait_for",
    "write_text",
]
