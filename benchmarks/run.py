"""`python -m benchmarks.run`: podman auto-update vs autoupdated check, side by side.

Both tools run in the same booted machine, against the same registry (30 ms away through a
latency proxy), over the same fleet of container units, alternating each round.  See
docs/benchmarks.md for what each scenario does and how to read the output.

    python -m benchmarks.run                      # startup, a, b, daemon; 3 rounds
    python -m benchmarks.run --scenario c         # the heavy one: 200 units over 50 images
    python -m benchmarks.run --quick              # one round each, short idle windows
    python -m benchmarks.run --scenario issue13   # issue 13's set: the bound sweep of b and c,
                                                  # the dry run at 60/200/500, the daemon there

Time on an idle 2-CPU host (estimated from quick runs and earlier idle figures): --scenario
issue13 takes about 30 min per platform (sweep b 8-9 min, sweep c about 15, scale about 6),
so about 60 min with both platforms (the default); --platform bookworm keeps it near 30.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import ceiling, measure
from benchmarks.environment import AUTOUPDATED_ENV, BenchEnv, Fleet
from tests.harness.machine import PLATFORMS, VENV_PYTHON

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FORMAT = "{{.Unit}},{{.Container}},{{.Updated}}"
TOOLS = ("podman", "autoupdated")
PLATFORM_TITLES = {"bookworm": "Debian 12 (podman 4.3)", "trixie": "Debian 13 (podman 5.4)"}
SCENARIOS = ("startup", "a", "b", "c", "daemon", "sweep", "scale")
DEFAULT_SCENARIOS = ("startup", "a", "b", "daemon")
# `--scenario issue13`: everything issue 13 asks for (the bound sweep of b and c, the dry run
# at 60, 200 and 500 containers, the daemon's run time and idle memory there).
PRESETS = {"issue13": ("sweep", "scale")}
TARGETS = {"a": 15.0, "b": 5.0, "c": 5.0}
# The environment `autoupdated` runs with in the machine (as Machine.autoupdated gives it).
AU_RUN_ENV = {"PYTHONPATH": "/src", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **AUTOUPDATED_ENV}
SCALE_IMAGES = {60: 20, 200: 50, 500: 100}  # issue 13's sizes: containers -> images


@dataclass
class Run:
    """One timed run of one tool."""

    tool: str
    round: int
    wall_s: float
    exit_code: int
    statuses: dict[str, int]
    traffic: dict[str, Any]
    restarted: int
    final_ok: bool
    problems: list[str] = field(default_factory=list)
    cpu_s: float | None = None  # CPU time of the machine, registry and proxies during the run
    host_wall_s: float | None = None  # around `nsenter` on the host (wall_s: inside the machine)
    own_cpu_s: float | None = None  # the tool's process and its children: user + sys
    bound: int | None = None  # restarts at once (podman: 1)
    gate: bool | None = None
    ceiling: dict[str, Any] | None = None  # update runs: floors, gate path, efficiency
    timings: dict[str, Any] | None = None  # autoupdated's `--timings` line, parsed

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class Scenario:
    name: str
    title: str
    containers: int
    images: int
    runs: list[Run] = field(default_factory=list)
    setup_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def of(self, tool: str) -> list[Run]:
        return [r for r in self.runs if r.tool == tool]

    def median_wall(self, tool: str) -> float:
        return statistics.median(r.wall_s for r in self.of(tool))

    def median_traffic(self, tool: str) -> dict[str, float]:
        runs = self.of(tool)
        keys = sorted({k for r in runs for k in r.traffic["by_class"]})
        out = {k: statistics.median(r.traffic["by_class"].get(k, 0) for r in runs) for k in keys}
        out["token"] = statistics.median(r.traffic["token_requests"] for r in runs)
        if tool == "autoupdated":
            out["token, by autoupdated itself"] = statistics.median(r.traffic["own_token_requests"] for r in runs)
        out["total (registry)"] = statistics.median(r.traffic["total"] for r in runs)
        out["401 answers"] = statistics.median(int(r.traffic["statuses"].get("401", 0)) for r in runs)
        out["TCP connections (registry + token)"] = statistics.median(
            r.traffic["proxy_connections"] + r.traffic["token_connections"] for r in runs
        )
        return out

    def summary(self) -> dict[str, Any]:
        if not self.runs:
            return {}
        p, a = self.median_wall("podman"), self.median_wall("autoupdated")
        au_runs = self.of("autoupdated")
        result: dict[str, Any] = {
            "podman_median_s": round(p, 3),
            "autoupdated_median_s": round(a, 3),
            "ratio_autoupdated_over_podman": round(a / p, 4),
            "speedup": round(p / a, 2),
            "target_speedup": TARGETS.get(self.name),
            "speedup_met": p / a >= TARGETS.get(self.name, 0),
            "all_final_ok": all(r.final_ok for r in self.runs),
            "podman_cpu_median_s": _median_or_none([r.cpu_s for r in self.of("podman")]),
            "autoupdated_cpu_median_s": _median_or_none([r.cpu_s for r in au_runs]),
            "max_token_requests_per_scope_autoupdated": max(
                r.traffic["max_own_token_requests_per_scope"] for r in au_runs
            ),
        }
        if self.name == "a":
            heads_ok = all(
                r.traffic["max_ok_heads_per_ref"] == 1 and r.traffic["distinct_manifest_refs_headed"] == self.images
                for r in au_runs
            )
            result["one_head_per_reference"] = heads_ok
            result["no_manifest_get"] = all(r.traffic["by_class"].get("manifest GET", 0) == 0 for r in au_runs)
        return result


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env = BenchEnv(delay=args.delay_ms / 1000, auth=args.auth, platform=args.platform)
        self.log_lines: list[str] = []
        self.au_args: list[str] = shlex.split(args.autoupdated_args)

    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[bench {stamp}] {text}", file=sys.stderr, flush=True)

    # -- the two tools -------------------------------------------------------------------

    def run_tool(
        self,
        fleet: Fleet,
        tool: str,
        *,
        dry_run: bool,
        rnd: int,
        expect_update: bool,
        extra: Sequence[str] = (),
    ) -> Run:
        m = fleet.machine
        # Every run starts with podman's socket-activated service stopped, as a timer or the
        # daemon finds it (it exits after 5 s idle); the podman CLI does not use it.
        m.systemctl("stop", "podman.service", check=False)
        before = fleet.unit_states()
        self.env.mark()
        flags = ["--dry-run"] if dry_run else []
        au_args = [*self.au_args, *extra]
        # Both tools run under the same tiny wrapper inside the machine: the wall time around
        # the tool and its own CPU (RUSAGE_CHILDREN), apart from the podman service's and the units'.
        wrap = [VENV_PYTHON, "-c", measure.RUSAGE_WRAPPER]
        cpu0 = self.env.cpu.usage()
        t0 = time.monotonic()
        if tool == "podman":
            proc = m.run(*wrap, "podman", "auto-update", *flags, "--format", FORMAT, check=False, timeout=3600)
        else:
            argv = ["check", *flags, "--format", FORMAT, "--timings", *au_args]
            proc = m.run(*wrap, VENV_PYTHON, "-m", "autoupdated", *argv, env=AU_RUN_ENV, check=False, timeout=3600)
        host_wall = time.monotonic() - t0
        cpu1 = self.env.cpu.usage()
        cpu = round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None
        stderr, rusage = measure.split_rusage(proc.stderr)
        wall = rusage["wall_s"] if rusage else host_wall
        own = rusage["user_s"] + rusage["sys_s"] if rusage else None
        traffic = self.env.traffic()
        statuses = Counter(line.rsplit(",", 1)[-1] for line in proc.stdout.splitlines() if line.count(",") >= 2)
        timed = ["InvocationID", "ActiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"]
        props = {} if dry_run else fleet.show(timed)
        snap = fleet.snapshot()
        restarted = fleet.restarted(before, snap.units)
        problems: list[str] = []
        if proc.returncode != 0:
            problems.append(f"exit {proc.returncode}: {stderr.strip()[-600:]}")
        if expect_update:
            problems += fleet.verify_current(snap)
            if statuses.get("true", 0) != len(fleet.containers):
                problems.append(f"statuses {dict(statuses)}, expected all true")
        else:
            want = "false"
            if statuses.get(want, 0) != len(fleet.containers):
                problems.append(f"statuses {dict(statuses)}, expected all {want}")
            if restarted:
                problems.append(f"{restarted} units restarted in a dry run")
        tr = traffic.as_dict()
        run = Run(
            tool, rnd, round(wall, 3), proc.returncode, dict(statuses), tr, restarted, not problems, problems, cpu
        )
        run.host_wall_s = round(host_wall, 3)
        run.own_cpu_s = None if own is None else round(own, 3)
        run.bound, run.gate, settle = (1, False, 0.0) if tool == "podman" else au_settings(au_args)
        if tool == "autoupdated":
            run.timings = measure.parse_phases(stderr)
        if not dry_run and cpu is not None:
            run.ceiling = self.ceiling_of(fleet, run, before, props, settle)
        ce = run.ceiling
        self.log(
            f"  {tool:<11} round {rnd}: {wall:7.2f} s, exit {proc.returncode}, {traffic.total} registry requests, "
            f"{traffic.token_requests} token, {restarted} restarted, CPU {cpu} s (own {run.own_cpu_s}), "
            + (f"efficiency {ce['efficiency']:.2f} ({ce['limit']} floor), " if ce else "")
            + f"{'OK' if not problems else problems[:3]}"
        )
        return run

    def ceiling_of(
        self,
        fleet: Fleet,
        run: Run,
        before: dict[str, Any],
        props: dict[str, dict[str, str]],
        settle: float,
    ) -> dict[str, Any]:
        """The run against what the host allows (benchmarks/ceiling.py), from systemd's timings."""
        assert run.cpu_s is not None and run.bound is not None
        found = ceiling.restarts({u: s.invocation for u, s in before.items()}, props, fleet.image_of_unit)
        waves = ceiling.waves(found)
        figures = ceiling.Ceiling(
            wall_s=run.wall_s,
            cpu_s=run.cpu_s,
            cpus=os.cpu_count() or 1,
            bound=run.bound,
            restart_sum_s=sum(r.seconds for r in found),
            gate_s=ceiling.gate_path(gate=bool(run.gate), settle=settle, run_waves=waves),
            own_cpu_s=run.own_cpu_s,
        )
        waits = list(waves.follower_waits.values())
        return {
            **figures.as_dict(),
            "gate": bool(run.gate),
            "settle_s": settle,
            "waves": waves.count,
            "restarts_timed": len(found),
            "restart_median_s": round(ceiling.median([r.seconds for r in found]), 3),
            "follower_wait_median_s": round(ceiling.median(waits), 3) if waits else None,
            "follower_wait_max_s": round(max(waits), 3) if waits else None,
            "early_followers": waves.early_followers,
        }

    def order(self, rnd: int) -> Sequence[str]:
        return TOOLS if rnd % 2 == 0 else tuple(reversed(TOOLS))

    # -- scenarios -----------------------------------------------------------------------

    def fleet(self, images: int, per_image: int, prefix: str) -> tuple[Fleet, float]:
        stop = self.args.stop_range_c if prefix == "c" else self.args.stop_range
        if self.env.machine is not None:
            self.env.stop_machine()
        self.log(f"booting a machine for {images * per_image} units over {images} images")
        self.env.boot_machine()
        fleet = Fleet(self.env, images, per_image, prefix=prefix, stop_seconds=stop)
        setup = fleet.create()
        self.log(f"  {len(fleet.units)} units active after {setup:.1f} s")
        return fleet, setup

    def warm_up(self, fleet: Fleet) -> None:
        """One dry run of each, untimed: page cache, bytecode cache, podman's first start."""
        m = fleet.machine
        m.podman("auto-update", "--dry-run", "--format", FORMAT, check=False, timeout=3600)
        m.autoupdated("check", "--dry-run", "--format", FORMAT, env=AUTOUPDATED_ENV, timeout=3600)

    def scenario_dry(self, fleet: Fleet, rounds: int) -> Scenario:
        sc = Scenario("a", "dry run, nothing new", len(fleet.containers), len(fleet.repos))
        self.warm_up(fleet)
        for rnd in range(rounds):
            for tool in self.order(rnd):
                sc.runs.append(self.run_tool(fleet, tool, dry_run=True, rnd=rnd, expect_update=False))
        return sc

    def scenario_update(self, name: str, fleet: Fleet, rounds: int) -> Scenario:
        title = f"a new image for all {len(fleet.repos)} repos, then update"
        sc = Scenario(name, title, len(fleet.containers), len(fleet.repos))
        publish: list[float] = []
        for rnd in range(rounds):
            for tool in self.order(rnd):
                t0 = time.monotonic()
                fleet.prune()
                fleet.publish()
                publish.append(time.monotonic() - t0)
                sc.runs.append(self.run_tool(fleet, tool, dry_run=False, rnd=rnd, expect_update=True))
        sc.extra["reset_s_median"] = round(statistics.median(publish), 2)
        sc.extra["reset"] = "prune dangling images in the machine, then build and push a new image for every repo"
        return sc

    def scenario_sweep(self, name: str, fleet: Fleet) -> dict[str, Any]:
        """Wall time against the restart bound, gate on and off, beside podman on the same work."""
        args = self.args
        runs: list[Run] = []
        publish: list[float] = []

        def one(tool: str, rnd: int, extra: Sequence[str] = ()) -> None:
            t0 = time.monotonic()
            fleet.prune()
            fleet.publish()
            publish.append(time.monotonic() - t0)
            runs.append(self.run_tool(fleet, tool, dry_run=False, rnd=rnd, expect_update=True, extra=extra))

        self.warm_up(fleet)  # untimed: the bytecode cache, podman's first start, the page cache
        for rnd in range(args.podman_rounds):
            one("podman", rnd)
        for gate in args.gates:
            for bound in args.bounds:
                for rnd in range(args.sweep_rounds):
                    flags = [f"--restart-concurrency={bound}", f"--health-gate={'true' if gate else 'false'}"]
                    one("autoupdated", rnd, [*flags, f"--settle-time={args.settle_time:g}"])
        return {
            "containers": len(fleet.containers),
            "images": len(fleet.repos),
            "stop_seconds": fleet.stop_seconds,
            "settle_s": args.settle_time,
            "runs": [r.as_dict() for r in runs],
            "points": sweep_points(runs),
            "reset_s_median": round(statistics.median(publish), 2) if publish else None,
        }

    def scenario_scale(self) -> dict[str, Any]:
        """The dry run at growing sizes in one machine (the fleet grows between them), podman
        against autoupdated, and the daemon's runs at each size and its idle memory after."""
        args = self.args
        self.env.boot_machine()
        fleet = Fleet(self.env, 0, 0, prefix="s", stop_seconds=0.0)
        sizes: list[dict[str, Any]] = []
        session: measure.DaemonSession | None = None
        daemon: dict[str, Any] = {"runs": []}
        try:
            for containers, images in args.scale:
                fleet.extend(images, containers)
                self.log(f"scale: growing the fleet to {containers} containers over {images} images")
                setup = fleet.create(batch=20, timeout=1800)
                if not sizes:
                    self.warm_up(fleet)  # once: the caches stay warm as the fleet grows
                runs: list[Run] = []
                for rnd in range(args.scale_rounds):
                    for tool in self.order(rnd):
                        runs.append(self.run_tool(fleet, tool, dry_run=True, rnd=rnd, expect_update=False))
                size = scale_point(runs, containers, len(fleet.repos))
                size["setup_s"] = round(setup, 1)
                sizes.append(size)
                if args.scale_daemon:
                    if session is None:
                        session = measure.DaemonSession(fleet.machine, self.env.workdir, args.daemon_env)
                        self.log("scale: starting the daemon")
                        session.start()
                    for _ in range(args.daemon_runs):
                        took, record = session.trigger()
                        daemon["runs"].append(
                            {
                                "containers": containers,
                                "duration_s": record.get("duration"),
                                "phases": record.get("phases"),
                                "summary": record.get("summary"),
                                "trigger_wait_s": round(took, 3),
                            }
                        )
                        self.log(
                            f"  daemon run over {containers}: {record.get('duration')} s ({record.get('summary')})"
                        )
            if session is not None:
                # Memory is the target here (wake-ups are the daemon scenario's): 10 s is enough.
                daemon.update(session.idle(min(10.0, args.idle_window), strace=False))
                daemon["module_floor"] = session.module_floor()
                daemon["after_containers"] = args.scale[-1][0]
        finally:
            if session is not None:
                session.stop()
        return {"sizes": sizes, "daemon": daemon if session is not None else None}

    def main(self) -> dict[str, Any]:
        args = self.args
        wanted = args.scenarios
        started = time.time()
        results: dict[str, Any] = {
            "command": "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "host": host_info(),
            "settings": {
                "delay_ms": args.delay_ms,
                "auth": args.auth,
                "rounds": args.rounds,
                "rounds_c": args.rounds_c,
                "images": args.images,
                "per_image": args.per_image,
                "autoupdated_args": self.au_args,
                "stop_seconds": args.stop_seconds,
                "stop_seconds_c": args.stop_seconds_c,
                "scale_rounds": args.scale_rounds,
                "bounds": args.bounds,
                "gates": args.gates,
                "sweep_fleets": args.sweep_fleets,
                "scale": args.scale,
                "settle_time": args.settle_time,
                # what the daemon ran with: the unit's variables, the benchmark's, --daemon-env
                "daemon_env": measure.daemon_env(args.daemon_env),
            },
            "scenarios": {},
        }
        self.env.start_registry()
        try:
            fleet: Fleet | None = None
            if "startup" in wanted:
                self.log("start-up: import time and wall times in an empty machine")
                self.env.boot_machine()
                assert self.env.machine is not None
                results["startup"] = measure.startup(self.env.machine, runs=3 if args.quick else 7)
                self.env.stop_machine()
            if {"a", "b", "daemon"} & set(wanted):
                fleet, setup = self.fleet(args.images, args.per_image, "b")
                results["settings"]["setup_s"] = round(setup, 1)
                results["versions"] = versions(fleet)
            scenarios: list[Scenario] = []
            if "a" in wanted and fleet is not None:
                self.log(f"scenario a: dry run with nothing new, {args.rounds} rounds")
                scenarios.append(self.scenario_dry(fleet, args.rounds))
            if "b" in wanted and fleet is not None:
                self.log(f"scenario b: update all {len(fleet.repos)} repos, {args.rounds} rounds")
                scenarios.append(self.scenario_update("b", fleet, args.rounds))
            if "daemon" in wanted and fleet is not None:
                window = 10.0 if args.quick else args.idle_window
                self.log(f"daemon: 3 runs over the fleet, then idle {window:g} s (+{window:g} s under strace)")
                publish = fleet.publish if args.daemon_updates else None
                results["daemon"] = measure.daemon(
                    fleet.machine, self.env.workdir, window=window, before_last=publish, env=args.daemon_env
                )
            if "c" in wanted:
                big, setup = self.fleet(args.images_c, args.per_image_c, "c")
                results.setdefault("versions", versions(big))
                self.log(
                    f"scenario c: update all {len(big.repos)} repos of {len(big.units)} units, {args.rounds_c} rounds"
                )
                sc = self.scenario_update("c", big, args.rounds_c)
                sc.setup_s = setup
                scenarios.append(sc)
            if "sweep" in wanted:
                results["sweeps"] = {}
                for which in args.sweep_fleets:
                    images, per_image = (
                        (args.images, args.per_image) if which == "b" else (args.images_c, args.per_image_c)
                    )
                    swept, setup = self.fleet(images, per_image, which)
                    results.setdefault("versions", versions(swept))
                    self.log(
                        f"sweep {which}: bounds {args.bounds}, gate {['on' if g else 'off' for g in args.gates]}, "
                        f"{len(swept.units)} units over {len(swept.repos)} images"
                    )
                    results["sweeps"][which] = {**self.scenario_sweep(which, swept), "setup_s": round(setup, 1)}
            if "scale" in wanted:
                if self.env.machine is not None:
                    self.env.stop_machine()
                results["scale"] = self.scenario_scale()
                results.setdefault("versions", versions_of(self.env))
            for sc in scenarios:
                results["scenarios"][sc.name] = {
                    "title": sc.title,
                    "containers": sc.containers,
                    "images": sc.images,
                    "summary": sc.summary(),
                    "traffic_median": {tool: sc.median_traffic(tool) for tool in TOOLS},
                    "restarted_median": {tool: statistics.median(r.restarted for r in sc.of(tool)) for tool in TOOLS},
                    "runs": [r.as_dict() for r in sc.runs],
                    **sc.extra,
                    **({"setup_s": round(sc.setup_s, 1)} if sc.setup_s else {}),
                }
            if self.env.machine is not None:
                results["cpu_coverage"] = self.env.cpu.coverage(self.env.machine.pid)
        finally:
            self.env.stop()
        results["duration_s"] = round(time.time() - started, 1)
        results["host"]["loadavg_end"] = os.getloadavg()
        return results


def au_settings(argv: Sequence[str]) -> tuple[int, bool, float]:
    """(restart bound, health gate, settle time) an `autoupdated check` with these arguments
    runs with: its own defaults unless given (the last one given wins, as in its parser)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--restart-concurrency", type=int, default=4)
    parser.add_argument("--health-gate", nargs="?", const="true", default="true")
    parser.add_argument("--settle-time", type=float, default=3.0)
    known, _ = parser.parse_known_args(list(argv))
    return known.restart_concurrency, known.health_gate.lower() in ("true", "1", "yes", "on"), known.settle_time


def sweep_points(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One point per (tool, bound, gate): medians of wall time and of every ceiling figure."""
    groups: dict[tuple[str, int, bool], list[Run]] = {}
    for r in runs:
        if r.ceiling is not None and r.bound is not None:
            groups.setdefault((r.tool, r.bound, bool(r.gate)), []).append(r)
    points = []
    for (tool, bound, gate), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "podman", not kv[0][2], kv[0][1])
    ):
        keys = ("wall_s", "cpu_s", "cpu_floor_s", "restart_floor_s", "gate_path_s", "efficiency", "own_cpu_share")
        point: dict[str, Any] = {"tool": tool, "bound": bound, "gate": gate, "runs": len(group)}
        for key in keys:
            values = [r.ceiling[key] for r in group if r.ceiling and r.ceiling.get(key) is not None]
            point[key] = round(statistics.median(values), 4) if values else None
        last = group[-1].ceiling or {}
        for key in ("limit", "waves", "follower_wait_median_s", "follower_wait_max_s", "early_followers", "settle_s"):
            point[key] = last.get(key)
        point["all_ok"] = all(r.final_ok for r in group)
        points.append(point)
    return points


def scale_point(runs: Sequence[Run], containers: int, images: int) -> dict[str, Any]:
    """One size of the dry-run scale: both tools' medians, autoupdated's phases, the HEAD count."""
    po = [r for r in runs if r.tool == "podman"]
    au = [r for r in runs if r.tool == "autoupdated"]
    phases: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    for r in au:
        if r.timings:
            for name, value in r.timings["phases"].items():
                phases.setdefault(name, []).append(value)
            sizes = r.timings["sizes"]
    p, a = statistics.median(r.wall_s for r in po), statistics.median(r.wall_s for r in au)
    return {
        "containers": containers,
        "images": images,
        "podman_median_s": round(p, 3),
        "autoupdated_median_s": round(a, 3),
        "speedup": round(p / a, 2) if a else None,
        "phases_median_s": {name: round(statistics.median(v), 4) for name, v in phases.items()},
        "sizes": sizes,
        "own_cpu_median_s": _median_or_none([r.own_cpu_s for r in au]),
        "podman_own_cpu_median_s": _median_or_none([r.own_cpu_s for r in po]),
        "cpu_median_s": {
            "podman": _median_or_none([r.cpu_s for r in po]),
            "autoupdated": _median_or_none([r.cpu_s for r in au]),
        },
        "heads": {
            "max_ok_per_reference": max(r.traffic["max_ok_heads_per_ref"] for r in au),
            "distinct_references": min(r.traffic["distinct_manifest_refs_headed"] for r in au),
            "manifest_get": max(r.traffic["by_class"].get("manifest GET", 0) for r in au),
        },
        "one_head_per_reference": all(
            r.traffic["max_ok_heads_per_ref"] == 1 and r.traffic["distinct_manifest_refs_headed"] == images for r in au
        ),
        "all_ok": all(r.final_ok for r in runs),
        "runs": [r.as_dict() for r in runs],
    }


def versions_of(env: BenchEnv) -> dict[str, str]:
    m = env.machine
    if m is None:
        return {}
    return {
        "podman": m.podman("--version").stdout.strip(),
        "systemd": m.run("systemctl", "--version").stdout.splitlines()[0],
    }


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


# -- report ------------------------------------------------------------------------------------


def host_info() -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "autoupdated"], capture_output=True, text=True
    )
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "autoupdated_commit": commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else ""),
    }


def versions(fleet: Fleet) -> dict[str, str]:
    m = fleet.machine
    return {
        "podman": m.podman("--version").stdout.strip(),
        "systemd": m.run("systemctl", "--version").stdout.splitlines()[0],
    }


def _fmt(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return f"{int(value)}"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(h, widths, strict=True))
        )
        for h in [header]
    ]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    s = results["settings"]
    out.append(f"autoupdated benchmark  ({results['command']})")
    host = results["host"]
    out.append(
        f"host: {host['cpus']} CPUs, kernel {host['kernel']}, load {host['loadavg_start'][0]:.2f} at start, "
        f"{host['loadavg_end'][0]:.2f} at end; autoupdated {host['autoupdated_commit']}"
    )
    if "versions" in results:
        out.append(f"machine: {results['versions']['podman']}, {results['versions']['systemd']}")
    out.append(
        f"registry: +{s['delay_ms']:g} ms per request (latency proxy), auth: {s['auth']}; "
        f"rounds: {s['rounds']} (c: {s['rounds_c']}), tools alternate each round; medians"
    )
    if s.get("stop_seconds") not in (None, "0", 0):
        out.append(f"services take {s['stop_seconds']} s to stop on SIGTERM (sweeps, b and c)")
    if s["autoupdated_args"]:
        out.append(f"autoupdated check extra arguments: {' '.join(s['autoupdated_args'])}")
    for name, sc in results["scenarios"].items():
        summ = sc["summary"]
        if not summ:
            continue
        out.append("")
        out.append(f"== scenario {name}: {sc['title']} ({sc['containers']} containers over {sc['images']} images)")
        rows: list[list[str]] = []
        rows.append(
            [
                "wall time, median (s)",
                f"{summ['podman_median_s']:.2f}",
                f"{summ['autoupdated_median_s']:.2f}",
                f"{summ['ratio_autoupdated_over_podman']:.3f}",
            ]
        )
        cpus = {t: [r["cpu_s"] for r in sc["runs"] if r["tool"] == t and r.get("cpu_s") is not None] for t in TOOLS}
        if all(cpus.values()):
            cp, ca = statistics.median(cpus["podman"]), statistics.median(cpus["autoupdated"])
            rows.append(["CPU time, machine + registry, median (s)", f"{cp:.2f}", f"{ca:.2f}", f"{ca / cp:.3f}"])
            rp, ra = sc["restarted_median"]["podman"], sc["restarted_median"]["autoupdated"]
            if rp and ra:
                rows.append(["  CPU time per restarted unit (s)", f"{cp / rp:.3f}", f"{ca / ra:.3f}", ""])
        tp, ta = sc["traffic_median"]["podman"], sc["traffic_median"]["autoupdated"]
        for key in sorted(set(tp) | set(ta), key=_traffic_order):
            vp, va = tp.get(key, 0), ta.get(key, 0)
            ratio = f"{va / vp:.3f}" if vp else ""
            rows.append([f"requests: {key}", _fmt(vp), _fmt(va), ratio])
        rp, ra = sc["restarted_median"]["podman"], sc["restarted_median"]["autoupdated"]
        rows.append(["units restarted", _fmt(rp), _fmt(ra), ""])
        final = {t: all(r["final_ok"] for r in sc["runs"] if r["tool"] == t) for t in TOOLS}
        label = "final state as expected" if name == "a" else "final state: all on new image, units active"
        rows.append([label, _yes(final["podman"]), _yes(final["autoupdated"]), ""])
        out.append(table(rows, ["", "podman", "autoupdated", "au/podman"]))
        for tool in TOOLS:
            walls = ", ".join(f"{r['wall_s']:.2f}" for r in sc["runs"] if r["tool"] == tool)
            out.append(f"every round, {tool}: {walls} s")
        target = summ.get("target_speedup")
        verdict = "met" if summ["speedup_met"] else "NOT met"
        out.append(f"speedup: {summ['speedup']:.2f}x (target >= {target:g}x: {verdict})")
        if name == "a":
            out.append(
                f"autoupdated: one manifest HEAD (200) per distinct reference: {_yes(summ['one_head_per_reference'])}; "
                f"no manifest GET: {_yes(summ['no_manifest_get'])}"
            )
        out.append(
            "autoupdated: its own token requests per (registry, scope), max: "
            f"{summ['max_token_requests_per_scope_autoupdated']} (target <= 1)"
            + (
                "; the other tokens are the podman service's, for the pulls autoupdated asks of it"
                if name != "a"
                else ""
            )
        )
        if "reset_s_median" in sc:
            out.append(f"reset between runs (untimed): {sc['reset']}; median {sc['reset_s_median']:.1f} s")
        for r in sc["runs"]:
            if r.get("ceiling"):
                out.append("  " + render_ceiling(r))
        for r in sc["runs"]:
            if r["problems"]:
                out.append(f"  PROBLEM {r['tool']} round {r['round']}: {'; '.join(r['problems'][:5])}")
    if "daemon" in results:
        d = results["daemon"]
        mem, idle = d["memory"], d["idle"]
        out.append("")
        out.append(
            f"== daemon: `autoupdated run` (interval schedule, WatchdogSec=60s) after {d['runs_completed']} runs"
        )
        out.append(f"last run: {d['last_run_summary']}; `trigger --wait` took {d['trigger_wait_s']} s")
        rows = [
            ["RSS (MB)", f"{mem['rss_mb']:.1f}", "<= 60"],
            ["peak RSS, VmHWM (MB)", f"{mem['hwm_mb']:.1f}", ""],
            ["PSS (MB)", f"{mem['pss_mb']:.1f}", ""],
            ["threads", str(mem["threads"]), ""],
            ["open files now / fd table (FDSize)", f"{mem.get('fds_open', '?')} / {mem.get('fd_table', '?')}", ""],
            [
                f"wake-ups while idle ({idle['window_s']:g} s; voluntary switches)",
                str(idle.get("wakeups", "?")),
                "",
            ],
            ["  per minute", f"{idle.get('wakeups_per_minute', 0):.1f}", "watchdog: 2/min"],
            [f"times on a CPU while idle ({idle['window_s']:g} s; schedstat)", str(idle["scheduled_total"]), ""],
        ]
        out.append(table(rows, ["", "measured", "target"]))
        for thread, counts in idle["per_thread"].items():
            out.append(f"  thread {thread}: {counts}")
        st = d["strace"]
        if st.get("available"):
            calls = ", ".join(f"{k} {v}" for k, v in list(st["syscalls"].items())[:12]) or "none"
            out.append(f"syscalls while idle (strace -f -c, {st['window_s']:g} s): {calls}")
        rss_ok = mem["rss_mb"] <= 60
        out.append(f"RSS target (<= 60 MB): {'met' if rss_ok else 'NOT met'}")
    if "startup" in results:
        st = results["startup"]
        out.append("")
        out.append("== start-up (inside the machine, bytecode cached, no labelled containers)")
        rows = [[name, f"{value:.3f}"] for name, value in st["wall_s"].items()]
        rows.append(["import time of `check` (-X importtime, ms)", f"{st['import_check']['total_ms']:.1f}"])
        rows.append(["import time of `--help` (ms)", f"{st['import_help_ms']:.1f}"])
        out.append(table(rows, [f"median of {st['runs']} (s)", "value"]))
        heavy = ", ".join(f"{k} {v:.0f}" for k, v in st["import_check"]["top_level_ms"].items())
        out.append(f"heaviest top-level imports of `check` (ms, cumulative): {heavy}")
    for name, sw in (results.get("sweeps") or {}).items():
        out += render_sweep(name, sw)
    if results.get("scale"):
        out += render_scale(results["scale"])
    cov = results.get("cpu_coverage") or {}
    if cov.get("available"):
        out.append("")
        out.append(
            f"CPU accounting: {cov['inside']} of the machine's processes in the benchmark's cpuacct group, "
            f"{cov['outside']} outside{(': ' + ', '.join(cov['outside_names'])) if cov['outside'] else ''}"
        )
    verdicts = issue13_targets(results)
    if verdicts:
        results["targets"] = [v.as_dict() for v in verdicts]
        out.append("")
        out.append("== issue 13 targets")
        out += [v.line() for v in verdicts]
    out.append("")
    out.append(f"total benchmark time: {results['duration_s'] / 60:.1f} min")
    return "\n".join(out)


def _above_floor(point: dict[str, Any]) -> float:
    """Wall time beyond the larger of the run's floors (what scheduling and the gate added)."""
    return float(point["wall_s"]) - max(float(point["cpu_floor_s"]), float(point["restart_floor_s"]))


def _floors(point: dict[str, Any]) -> str:
    return (
        f"wall {point['wall_s']:.2f} s against CPU floor {point['cpu_floor_s']:.2f} s, restart floor "
        f"{point['restart_floor_s']:.2f} s, gate path {point['gate_path_s']:.2f} s: it hits the {point['limit']} floor"
    )


def issue13_targets(results: dict[str, Any]) -> list[ceiling.Verdict]:
    """Every target of issue 13 the results have figures for, met or not, and where not, why."""
    verdicts: list[ceiling.Verdict] = []
    V = ceiling.Verdict
    sweeps: dict[str, Any] = results.get("sweeps") or {}
    for name, sw in sweeps.items():
        points = [p for p in sw["points"] if p["tool"] == "autoupdated"]
        podman = [p for p in sw["points"] if p["tool"] == "podman"]
        if points:
            worst = min(points, key=lambda p: p["efficiency"] or 0)
            effs = ", ".join(
                f"{p['bound']}{'g' if p['gate'] else ''} {100 * (p['efficiency'] or 0):.0f}%" for p in points
            )
            verdicts.append(
                V(
                    f"sweep {name}: efficiency >= 90 % at every bound, gate on (g) and off",
                    all((p["efficiency"] or 0) >= 0.9 for p in points),
                    effs,
                    f"lowest at bound {worst['bound']}, gate {'on' if worst['gate'] else 'off'}: {_floors(worst)}",
                )
            )
        one = [p for p in points if p["bound"] == 1 and not p["gate"]]
        if one and podman:
            a, p = one[0]["wall_s"], podman[0]["wall_s"]
            gated = [q for q in points if q["bound"] == 1 and q["gate"]]
            extra = f"; gate on: {gated[0]['wall_s']:.2f} s" if gated else ""
            verdicts.append(
                V(
                    f"sweep {name}: bound 1 no slower than podman (same work: gate off)",
                    a <= p,
                    f"{a:.2f} s against podman's {p:.2f} s{extra}",
                    f"podman: {_floors(podman[0])}; autoupdated: {_floors(one[0])}",
                )
            )
        rows = []
        beyond = []
        ok = True
        floors_differ = True  # the miss is in the runs' floors, not the gate: until a bound says otherwise
        for bound in sorted({p["bound"] for p in points}):
            on = [p for p in points if p["bound"] == bound and p["gate"]]
            off = [p for p in points if p["bound"] == bound and not p["gate"]]
            if not on or not off:
                continue
            added = on[0]["wall_s"] - off[0]["wall_s"]
            allowed = (on[0]["waves"] or 0) * sw["settle_s"]
            ok = ok and added <= allowed + GATE_SLACK_S and not on[0]["early_followers"]
            rows.append(f"{bound}: {added:+.2f} s of {allowed:g} s")
            net = _above_floor(on[0]) - _above_floor(off[0])
            floors_differ = floors_differ and net <= allowed + GATE_SLACK_S
            beyond.append(f"{bound}: {net:+.2f} s")
        if rows:
            waits = [
                p["follower_wait_median_s"] for p in points if p["gate"] and p["follower_wait_median_s"] is not None
            ]
            verdicts.append(
                V(
                    f"sweep {name}: the gate adds at most one settle time ({sw['settle_s']:g} s) per wave "
                    f"(+{GATE_SLACK_S:g} s measurement slack), followers never before their canary",
                    ok,
                    "gate on - gate off at bound "
                    + "; ".join(rows)
                    # Printed beside, not judged: the same difference with each run's own larger
                    # floor taken off first, which leaves out how much CPU and restart work the
                    # two separate runs happened to take.
                    + "; beyond each run's own floor: "
                    + "; ".join(beyond)
                    + (
                        f"; followers' wait after their own canary is up, median {min(waits):.2f}-{max(waits):.2f} s"
                        if waits
                        else ""
                    ),
                    (
                        "the two runs of a bound took different CPU and restart work (their floors differ); "
                        "beyond each run's own floor the gate adds at most one settle time per wave"
                        if floors_differ
                        else "the gate's waits serialise beyond one settle per wave"
                    ),
                )
            )
    shares = [
        (r["own_cpu_s"] / r["cpu_s"], where)
        for where, runs in _update_runs(results)
        for r in runs
        if r["tool"] == "autoupdated" and r.get("own_cpu_s") is not None and r.get("cpu_s")
    ]
    if shares:
        top, where = max(shares)
        verdicts.append(
            V(
                "autoupdated's own CPU <= 5 % of an update run's total",
                top <= 0.05,
                f"at most {100 * top:.1f} % ({where})",
            )
        )
    scale = results.get("scale") or {}
    for size in scale.get("sizes", []):
        want = {60: 15.0, 500: 30.0}.get(size["containers"])
        if want is not None:
            verdicts.append(
                V(
                    f"dry run at {size['containers']} containers over {size['images']} images: >= {want:g}x podman",
                    (size["speedup"] or 0) >= want,
                    f"{size['speedup']:.1f}x ({size['podman_median_s']:.2f} s against "
                    f"{size['autoupdated_median_s']:.2f} s)",
                    "autoupdated's phases: "
                    + ", ".join(f"{k} {v:.3f} s" for k, v in size["phases_median_s"].items())
                    + f"; outside the run (start-up, imports, report, exit) {_outside_run(size):.3f} s",
                )
            )
        verdicts.append(
            V(
                f"dry run at {size['containers']}: exactly one HEAD per distinct reference",
                size["one_head_per_reference"],
                f"{size['heads']['distinct_references']} references HEADed of {size['images']}, "
                f"at most {size['heads']['max_ok_per_reference']} each, {size['heads']['manifest_get']} manifest GETs",
            )
        )
    sizes = scale.get("sizes", [])
    if len(sizes) >= 2:
        check = {s["containers"]: s["phases_median_s"].get("check", 0.0) for s in sizes}
        refs = {s["containers"]: s["sizes"].get("references", s["images"]) for s in sizes}
        verdicts.append(
            V(
                "the check grows with distinct references, not containers",
                ceiling.grows_with_references(check, {c: c for c in check}, refs),
                "check " + ", ".join(f"{c}: {v:.3f} s ({refs[c]} refs)" for c, v in sorted(check.items())),
                "these sizes cannot tell references from containers"
                if max(check) / min(check) <= (refs[max(check)] / refs[min(check)]) * 1.25
                else "the check grows faster than the references",
            )
        )
    daemon = scale.get("daemon") or {}
    small = [r["duration_s"] for r in daemon.get("runs", []) if r["containers"] == 60 and r["duration_s"] is not None]
    if small:
        med = statistics.median(small)
        verdicts.append(
            V(
                "a run inside the daemon over the 60-container fleet (nothing new) <= 0.3 s",
                med <= 0.3,
                f"median {med:.3f} s of {len(small)} (the daemon's run record)",
            )
        )
    if daemon.get("memory"):
        rss = daemon["memory"]["rss_mb"]
        verdicts.append(
            V(
                f"idle RSS <= 60 MB after runs over {daemon.get('after_containers')} containers",
                rss <= 60,
                f"{rss:.1f} MB (peak {daemon['memory']['hwm_mb']:.1f} MB)" + _floor_note(daemon, rss),
            )
        )
    return verdicts


def _floor_note(daemon: dict[str, Any], rss: float) -> str:
    """Where the idle RSS stands against its floor: the modules alone, with no run done."""
    floor = daemon.get("module_floor")
    if not floor:
        return ""
    note = f"; module floor {floor['rss_mb']:.1f} MB (the imports alone), runs leave {rss - floor['rss_mb']:+.1f} MB"
    mapped = (daemon.get("memory") or {}).get("mapped_files_mb")
    if mapped is not None:
        note += f"; {mapped:.1f} MB of the RSS are the interpreter's and libraries' mapped files"
    return note


GATE_SLACK_S = 0.5  # wall times of two separate runs differ by this much with nothing changed


def _update_runs(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    found = [(f"sweep {n}", sw["runs"]) for n, sw in (results.get("sweeps") or {}).items()]
    found += [(f"scenario {n}", sc["runs"]) for n, sc in results.get("scenarios", {}).items() if n in ("b", "c")]
    return found


def render_ceiling(run: dict[str, Any]) -> str:
    c = run["ceiling"]
    own = (
        f", own CPU {c['own_cpu_s']:.2f} s ({100 * c['own_cpu_share']:.1f} %)"
        if c.get("own_cpu_share") is not None
        else ""
    )
    return (
        f"{run['tool']} round {run['round']}: wall {c['wall_s']:.2f} s; CPU {c['cpu_s']:.1f} CPU-s / {c['cpus']} = "
        f"CPU floor {c['cpu_floor_s']:.2f} s; restarts {c['restart_sum_s']:.1f} s / bound {c['bound']} = restart floor "
        f"{c['restart_floor_s']:.2f} s; gate path {c['gate_path_s']:.1f} s ({c['waves']} waves x {c['settle_s']:g} s"
        f"{'' if c['gate'] else ', gate off'}); efficiency {100 * c['efficiency']:.0f} % ({c['limit']} floor){own}"
    )


def render_sweep(name: str, sw: dict[str, Any]) -> list[str]:
    stop = sw["stop_seconds"]
    stop_text = f"{stop[0]:g}-{stop[1]:g}" if isinstance(stop, list | tuple) else f"{stop:g}"
    out = [
        "",
        f"== sweep {name}: update {sw['containers']} containers over {sw['images']} images against the restart bound "
        f"(services stop in {stop_text} s, settle {sw['settle_s']:g} s)",
    ]
    rows = []
    for p in sw["points"]:
        rows.append(
            [
                p["tool"],
                str(p["bound"]),
                "on" if p["gate"] else "off",
                f"{p['wall_s']:.2f}",
                f"{p['cpu_s']:.1f}",
                f"{p['cpu_floor_s']:.2f}",
                f"{p['restart_floor_s']:.2f}",
                f"{p['gate_path_s']:.1f}",
                f"{100 * (p['efficiency'] or 0):.0f}%",
                str(p["limit"]),
                "" if p["own_cpu_share"] is None else f"{100 * p['own_cpu_share']:.1f}%",
                "" if p["follower_wait_median_s"] is None else f"{p['follower_wait_median_s']:.2f}",
                "yes" if p["all_ok"] else "NO",
            ]
        )
    header = [
        "tool",
        "bound",
        "gate",
        "wall s",
        "CPU-s",
        "CPU floor",
        "restart floor",
        "gate path",
        "efficiency",
        "floor hit",
        "own CPU",
        "follower wait",
        "ok",
    ]
    out.append(table(rows, header))
    if sw.get("plot"):
        out.append(f"plot: {sw['plot']}")
    return out


def _outside_run(size: dict[str, Any]) -> float:
    """The part of `autoupdated check`'s wall time outside its run: the interpreter's start,
    the imports, the report and the exit (the check phase spans the image listing)."""
    ph = size["phases_median_s"]
    return max(0.0, size["autoupdated_median_s"] - ph.get("list", 0.0) - ph.get("check", 0.0))


def render_scale(scale: dict[str, Any]) -> list[str]:
    out = ["", "== scale: dry run, nothing new, growing fleet (one machine)"]
    rows = []
    for s in scale["sizes"]:
        ph = s["phases_median_s"]
        rows.append(
            [
                f"{s['containers']} / {s['images']}",
                f"{s['podman_median_s']:.2f}",
                f"{s['autoupdated_median_s']:.3f}",
                f"{s['speedup']:.1f}x",
                f"{ph.get('list', 0):.3f}",
                f"{ph.get('images', 0):.3f}",
                f"{ph.get('check', 0):.3f}",
                f"{_outside_run(s):.3f}",
                str(s["sizes"].get("references", "")),
                f"{s['heads']['distinct_references']} x {s['heads']['max_ok_per_reference']}",
                "" if s["own_cpu_median_s"] is None else f"{s['own_cpu_median_s']:.2f}",
            ]
        )
    out.append(
        table(
            rows,
            [
                "containers / images",
                "podman s",
                "autoupdated s",
                "speedup",
                "list s",
                "images s",
                "check s",
                "outside s",
                "refs",
                "HEADs",
                "own CPU-s",
            ],
        )
    )
    sizes = scale["sizes"]
    if len(sizes) >= 2:
        base = sizes[0]
        parts = []
        for s in sizes[1:]:
            f = [
                f"containers x{s['containers'] / base['containers']:.1f}",
                f"references x{s['sizes'].get('references', 1) / max(1, base['sizes'].get('references', 1)):.1f}",
                f"podman x{s['podman_median_s'] / base['podman_median_s']:.1f}",
            ]
            for phase in ("list", "images", "check"):
                b0 = base["phases_median_s"].get(phase, 0)
                if b0:
                    f.append(f"{phase} x{s['phases_median_s'].get(phase, 0) / b0:.1f}")
            parts.append(f"{base['containers']} -> {s['containers']}: " + ", ".join(f))
        out.append("growth: " + "; ".join(parts))
    d = scale.get("daemon")
    if d:
        by_size: dict[int, list[float]] = {}
        for r in d["runs"]:
            if r["duration_s"] is not None:
                by_size.setdefault(r["containers"], []).append(r["duration_s"])
        runs = "; ".join(f"{c}: {', '.join(f'{v:.3f}' for v in vs)} s" for c, vs in sorted(by_size.items()))
        out.append(f"daemon: runs inside the running daemon (its run record), nothing new: {runs}")
        if d.get("memory"):
            m = d["memory"]
            out.append(
                f"daemon idle after runs over {d.get('after_containers')} containers: RSS {m['rss_mb']:.1f} MB, "
                f"peak {m['hwm_mb']:.1f} MB, {m['threads']} threads, wake-ups {d['idle'].get('wakeups')} in "
                f"{d['idle']['window_s']:g} s"
            )
        if d.get("module_floor"):
            f = d["module_floor"]
            out.append(
                f"module floor (a fresh interpreter that imported every autoupdated module, no run): "
                f"RSS {f['rss_mb']:.1f} MB, anonymous {f['anon_mb']:.1f} MB"
            )
    return out


def _traffic_order(key: str) -> tuple[int, str]:
    order = ["manifest HEAD", "manifest GET", "blob GET", "blob HEAD", "ping GET", "token", "401 answers"]
    for i, prefix in enumerate(order):
        if key.startswith(prefix):
            return i, key
    if key.startswith("total"):
        return 98, key
    if key.startswith("TCP"):
        return 99, key
    return 50, key


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def _stop_range(text: str) -> float | tuple[float, float]:
    low, sep, high = text.partition("-")
    return (float(low), float(high)) if sep else float(low)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of scenarios a and b (default 3)")
    parser.add_argument("--rounds-c", type=int, default=2, help="rounds of scenario c (default 2)")
    parser.add_argument(
        "--scenario",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, from {','.join(SCENARIOS)}, or issue13 (= sweep,scale; default "
        f"{','.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument("--quick", action="store_true", help="one round, 10 s idle windows")
    parser.add_argument(
        "--daemon-updates",
        action="store_true",
        help="daemon scenario: publish a new image for every repo before its last run (peak memory of an update)",
    )
    parser.add_argument("--images", type=int, default=20, help="repos in the fleet of a/b (default 20)")
    parser.add_argument("--per-image", type=int, default=3, help="units per repo in a/b (default 3)")
    parser.add_argument("--images-c", type=int, default=50)
    parser.add_argument("--per-image-c", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=30.0, help="latency added per request (default 30)")
    parser.add_argument(
        "--auth",
        choices=("token", "none"),
        default="token",
        help="bearer-token registry (default, like Docker Hub) or none",
    )
    parser.add_argument("--idle-window", type=float, default=30.0, help="seconds the idle daemon is watched")
    parser.add_argument(
        "--stop-seconds",
        default=None,
        help="seconds each service of b, c and the sweeps takes to stop on SIGTERM: S, or a range LOW-HIGH the "
        "units are spread over evenly (default 0: stops at once, restarts are CPU-bound; with issue13: 0-1)",
    )
    parser.add_argument(
        "--stop-seconds-c",
        default=None,
        help="as --stop-seconds, for c's fleet (default: as --stop-seconds; with issue13: 0, the CPU-bound case, "
        "which keeps the whole set within its time)",
    )
    parser.add_argument("--scale-rounds", type=int, default=1, help="scale: rounds at each size (default 1)")
    parser.add_argument("--bounds", default="1,2,4,8,16", help="sweep: restart bounds (default 1,2,4,8,16)")
    parser.add_argument("--gate", default="on,off", help="sweep: health gate on, off or both (default on,off)")
    parser.add_argument("--sweep-fleets", default="b,c", help="sweep: over the fleet of b, of c, or both (default b,c)")
    parser.add_argument("--sweep-rounds", type=int, default=1, help="sweep: runs per (bound, gate) (default 1)")
    parser.add_argument("--podman-rounds", type=int, default=1, help="sweep: podman runs per fleet (default 1)")
    parser.add_argument("--settle-time", type=float, default=3.0, help="sweep: autoupdated's settle time (default 3)")
    parser.add_argument(
        "--sizes",
        default="60,200,500",
        help="scale: containers per size (default 60,200,500; images 20, 50, 100, else containers/5)",
    )
    parser.add_argument("--daemon-runs", type=int, default=3, help="scale: daemon runs at each size (default 3)")
    parser.add_argument(
        "--no-scale-daemon", dest="scale_daemon", action="store_false", help="scale: leave the daemon out"
    )
    parser.add_argument("--autoupdated-args", default="", help="extra arguments for `autoupdated check`")
    parser.add_argument(
        "--daemon-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="daemon and scale: a variable for the daemon beyond the unit's Environment= (e.g. "
        "PYTHONMALLOC=pymalloc to measure the allocator the unit does not choose); repeatable",
    )
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/<time>.json)")
    parser.add_argument(
        "--platform",
        default="bookworm,trixie",
        help="comma-separated machine platforms, each benchmarked in turn: bookworm (Debian 12, podman 4.3), "
        "trixie (Debian 13, podman 5.4); default both",
    )
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.daemon_env):
        parser.error("--daemon-env takes KEY=VALUE")
    args.daemon_env = dict(item.split("=", 1) for item in args.daemon_env)
    args.platforms = [p.strip() for p in args.platform.split(",") if p.strip()]
    if not args.platforms or set(args.platforms) - set(PLATFORMS):
        parser.error(f"--platform takes a comma-separated list from {', '.join(PLATFORMS)}")
    args.scenarios = []
    for name in (s.strip() for s in args.scenario.split(",") if s.strip()):
        args.scenarios += PRESETS.get(name, (name,))
    issue13 = "issue13" in args.scenario.split(",")
    if args.stop_seconds is None:
        args.stop_seconds = "0-1" if issue13 else "0"
    if args.stop_seconds_c is None:
        args.stop_seconds_c = "0" if issue13 else args.stop_seconds
    try:
        args.stop_range = _stop_range(args.stop_seconds)
        args.stop_range_c = _stop_range(args.stop_seconds_c)
        args.bounds = [int(b) for b in args.bounds.split(",") if b.strip()]
        sizes = [int(c) for c in args.sizes.split(",") if c.strip()]
    except ValueError as err:
        parser.error(f"--stop-seconds, --bounds and --sizes take numbers: {err}")
    args.scale = [(c, SCALE_IMAGES.get(c, max(1, c // 5))) for c in sorted(sizes)]
    gates = {"on": True, "off": False}
    try:
        args.gates = [gates[g.strip()] for g in args.gate.split(",") if g.strip()]
    except KeyError:
        parser.error("--gate takes on, off or on,off")
    args.sweep_fleets = [f.strip() for f in args.sweep_fleets.split(",") if f.strip()]
    if set(args.sweep_fleets) - {"b", "c"}:
        parser.error("--sweep-fleets takes b, c or b,c")
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}")
    if args.quick:
        args.rounds, args.rounds_c = 1, 1
    return args


def main(argv: Sequence[str] | None = None, *, write: Callable[[str], None] = print) -> int:
    if os.geteuid() != 0:
        print("the benchmark needs root (systemd-nspawn, nsenter, podman)", file=sys.stderr)
        return 2
    args = parse_args(argv)
    per_platform: dict[str, dict[str, Any]] = {}
    texts = []
    for name in args.platforms:
        args.platform = name
        per_platform[name] = Bench(args).main()
        texts.append(f"===== {PLATFORM_TITLES[name]}\n\n{render(per_platform[name])}")
    # One platform: the results as they always were; several: one set per platform.
    results: dict[str, Any] = (
        per_platform[args.platforms[0]] if len(args.platforms) == 1 else {"platforms": per_platform}
    )
    text = texts[0].split("\n\n", 1)[1] if len(texts) == 1 else "\n\n".join(texts)
    output = args.output or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    for name, res in per_platform.items():
        for which, sw in (res.get("sweeps") or {}).items():
            png = output.with_name(f"{output.stem}-{name}-sweep-{which}.png")
            try:
                from benchmarks import plot

                plot.sweep(
                    sw,
                    png,
                    title=f"{PLATFORM_TITLES[name]}: update {sw['containers']} containers over {sw['images']} images",
                )
            except ImportError as err:
                print(f"no plot ({err}): pip install -e '.[bench]'", file=sys.stderr)
            else:
                sw["plot"] = str(png)
                text += f"\nplot of sweep {which} ({PLATFORM_TITLES[name]}): {png}"
    write(text)
    results["report"] = text.splitlines()
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=".results-")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, output)
    print(f"\nresults: {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
