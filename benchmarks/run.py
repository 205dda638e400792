"""`python -m benchmarks.run`: podman auto-update vs autoupdated check, side by side.

Both tools run in the same booted machine, against the same registry (30 ms away through a
latency proxy), over the same fleet of container units, alternating each round.  See
docs/benchmarks.md for what each scenario does and how to read the output.

    python -m benchmarks.run                      # startup, a, b, daemon; 3 rounds
    python -m benchmarks.run --scenario c         # the heavy one: 200 units over 50 images
    python -m benchmarks.run --quick              # one round each, short idle windows
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

from benchmarks import measure
from benchmarks.environment import AUTOUPDATED_ENV, BenchEnv, Fleet
from tests.harness.machine import PLATFORMS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FORMAT = "{{.Unit}},{{.Container}},{{.Updated}}"
TOOLS = ("podman", "autoupdated")
PLATFORM_TITLES = {"bookworm": "Debian 12 (podman 4.3)", "trixie": "Debian 13 (podman 5.4)"}
SCENARIOS = ("startup", "a", "b", "c", "daemon")
DEFAULT_SCENARIOS = ("startup", "a", "b", "daemon")
TARGETS = {"a": 15.0, "b": 5.0, "c": 5.0}


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

    def run_tool(self, fleet: Fleet, tool: str, *, dry_run: bool, rnd: int, expect_update: bool) -> Run:
        m = fleet.machine
        # Every run starts with podman's socket-activated service stopped, as a timer or the
        # daemon finds it (it exits after 5 s idle); the podman CLI does not use it.
        m.systemctl("stop", "podman.service", check=False)
        before = fleet.unit_states()
        self.env.mark()
        flags = ["--dry-run"] if dry_run else []
        cpu0 = self.env.cpu.usage()
        t0 = time.monotonic()
        if tool == "podman":
            proc = m.podman("auto-update", *flags, "--format", FORMAT, check=False, timeout=3600)
        else:
            argv = ["check", *flags, "--format", FORMAT, *self.au_args]
            proc = m.autoupdated(*argv, env=AUTOUPDATED_ENV, check=False, timeout=3600)
        wall = time.monotonic() - t0
        cpu1 = self.env.cpu.usage()
        cpu = round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None
        traffic = self.env.traffic()
        statuses = Counter(line.rsplit(",", 1)[-1] for line in proc.stdout.splitlines() if line.count(",") >= 2)
        snap = fleet.snapshot()
        restarted = fleet.restarted(before, snap.units)
        problems: list[str] = []
        if proc.returncode != 0:
            problems.append(f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}")
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
        self.log(
            f"  {tool:<11} round {rnd}: {wall:7.2f} s, exit {proc.returncode}, {traffic.total} registry requests, "
            f"{traffic.token_requests} token, {restarted} restarted, CPU {cpu} s, "
            f"{'OK' if not problems else problems[:3]}"
        )
        return run

    def order(self, rnd: int) -> Sequence[str]:
        return TOOLS if rnd % 2 == 0 else tuple(reversed(TOOLS))

    # -- scenarios -----------------------------------------------------------------------

    def fleet(self, images: int, per_image: int, prefix: str) -> tuple[Fleet, float]:
        if self.env.machine is not None:
            self.env.stop_machine()
        self.log(f"booting a machine for {images * per_image} units over {images} images")
        self.env.boot_machine()
        fleet = Fleet(self.env, images, per_image, prefix=prefix, stop_seconds=self.args.stop_seconds)
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
                results["daemon"] = measure.daemon(fleet.machine, self.env.workdir, window=window, before_last=publish)
            if "c" in wanted:
                big, setup = self.fleet(args.images_c, args.per_image_c, "c")
                results.setdefault("versions", versions(big))
                self.log(
                    f"scenario c: update all {len(big.repos)} repos of {len(big.units)} units, {args.rounds_c} rounds"
                )
                sc = self.scenario_update("c", big, args.rounds_c)
                sc.setup_s = setup
                scenarios.append(sc)
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
        finally:
            self.env.stop()
        results["duration_s"] = round(time.time() - started, 1)
        results["host"]["loadavg_end"] = os.getloadavg()
        return results


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
    if s.get("stop_seconds"):
        out.append(f"services take {s['stop_seconds']:g} s to stop on SIGTERM")
    if s["autoupdated_args"]:
        out.append(f"autoupdated check extra arguments: {' '.join(s['autoupdated_args'])}")
    for name, sc in results["scenarios"].items():
        summ = sc["summary"]
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
    out.append("")
    out.append(f"total benchmark time: {results['duration_s'] / 60:.1f} min")
    return "\n".join(out)


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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of scenarios a and b (default 3)")
    parser.add_argument("--rounds-c", type=int, default=2, help="rounds of scenario c (default 2)")
    parser.add_argument(
        "--scenario",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, from {','.join(SCENARIOS)} (default {','.join(DEFAULT_SCENARIOS)})",
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
        type=float,
        default=0.0,
        help="seconds each service takes to stop on SIGTERM (default 0: stops at once, restarts are CPU-bound)",
    )
    parser.add_argument("--autoupdated-args", default="", help="extra arguments for `autoupdated check`")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/<time>.json)")
    parser.add_argument(
        "--platform",
        default="bookworm,trixie",
        help="comma-separated machine platforms, each benchmarked in turn: bookworm (Debian 12, podman 4.3), "
        "trixie (Debian 13, podman 5.4); default both",
    )
    args = parser.parse_args(argv)
    args.platforms = [p.strip() for p in args.platform.split(",") if p.strip()]
    if not args.platforms or set(args.platforms) - set(PLATFORMS):
        parser.error(f"--platform takes a comma-separated list from {', '.join(PLATFORMS)}")
    args.scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
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
    results = per_platform[args.platforms[0]] if len(args.platforms) == 1 else {"platforms": per_platform}
    text = texts[0].split("\n\n", 1)[1] if len(texts) == 1 else "\n\n".join(texts)
    write(text)
    output = args.output or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
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
