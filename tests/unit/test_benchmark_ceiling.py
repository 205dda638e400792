"""The benchmark's ceiling figures (issue 13): floors, the gate's path, efficiency, the verdicts,
the wrapper that measures a tool's own CPU, the parse of `check --timings`, and the plot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import ceiling, measure
from benchmarks.run import au_settings, issue13_targets, parse_args

SHOW = """\
Id=container-a0.service
InvocationID=new0
ActiveExitTimestampMonotonic=10000000
ActiveEnterTimestampMonotonic=11500000

Id=container-a1.service
InvocationID=new1
ActiveExitTimestampMonotonic=14600000
ActiveEnterTimestampMonotonic=15600000

Id=container-b0.service
InvocationID=new2
ActiveExitTimestampMonotonic=10100000
ActiveEnterTimestampMonotonic=11100000

Id=container-c0.service
InvocationID=same
ActiveExitTimestampMonotonic=1000000
ActiveEnterTimestampMonotonic=2000000
"""
IMAGES = {
    "container-a0.service": "a",
    "container-a1.service": "a",
    "container-b0.service": "b",
    "container-c0.service": "c",
}
BEFORE = {
    "container-a0.service": "old0",
    "container-a1.service": "old1",
    "container-b0.service": "old2",
    "container-c0.service": "same",
}


def test_restarts_are_the_units_whose_invocation_changed_with_systemds_durations() -> None:
    found = ceiling.restarts(BEFORE, ceiling.parse_show(SHOW), IMAGES)
    assert [(r.unit, r.seconds) for r in found] == [
        ("container-a0.service", 1.5),
        ("container-b0.service", 1.0),
        ("container-a1.service", 1.0),
    ]


def test_waves_count_canaries_then_followers_and_each_followers_wait_after_its_own_canary() -> None:
    waves = ceiling.waves(ceiling.restarts(BEFORE, ceiling.parse_show(SHOW), IMAGES))
    assert waves.count == 2
    # a1 stopped 3.1 s after a0 (its canary) was up; b has no follower, so b's canary is no one's wait
    assert waves.follower_waits == {"a": pytest.approx(3.1)}
    assert waves.early_followers == 0
    assert ceiling.gate_path(gate=True, settle=3.0, run_waves=waves) == 6.0
    assert ceiling.gate_path(gate=False, settle=3.0, run_waves=waves) == 0.0


def test_a_follower_that_stopped_before_its_canary_was_up_is_counted() -> None:
    r = [ceiling.Restart("u0", "a", 0.0, 2.0), ceiling.Restart("u1", "a", 1.0, 3.0)]
    assert ceiling.waves(r).early_followers == 1
    assert ceiling.waves([ceiling.Restart("u0", "a", 0.0, 2.0)]).count == 1
    assert ceiling.waves([]).count == 0


def test_efficiency_is_the_larger_floor_plus_the_gate_path_over_the_wall_time() -> None:
    cpu_bound = ceiling.Ceiling(wall_s=20.0, cpu_s=30.0, cpus=2, bound=8, restart_sum_s=60.0, gate_s=3.0, own_cpu_s=0.6)
    assert cpu_bound.cpu_floor_s == 15.0 and cpu_bound.restart_floor_s == 7.5
    assert cpu_bound.limit == "CPU"
    assert cpu_bound.efficiency == pytest.approx(0.9)
    assert cpu_bound.own_cpu_share == pytest.approx(0.02)
    waiting = ceiling.Ceiling(wall_s=70.0, cpu_s=20.0, cpus=2, bound=1, restart_sum_s=60.0, gate_s=0.0)
    assert waiting.limit == "restart" and waiting.efficiency == pytest.approx(60 / 70)
    assert waiting.own_cpu_share is None


def test_the_check_grows_with_references_only_when_the_sizes_can_tell() -> None:
    containers, refs = {60: 60, 500: 500}, {60: 20, 500: 100}
    assert ceiling.grows_with_references({60: 0.2, 500: 0.7}, containers, refs)
    assert not ceiling.grows_with_references({60: 0.2, 500: 1.6}, containers, refs)  # x8: with containers
    assert not ceiling.grows_with_references({60: 0.2, 500: 0.3}, {60: 60, 500: 100}, refs)  # cannot tell
    assert not ceiling.grows_with_references({60: 0.2}, containers, refs)


def test_au_settings_reads_what_autoupdated_check_will_run_with() -> None:
    assert au_settings([]) == (4, True, 3.0)
    assert au_settings(["--restart-concurrency=1", "--health-gate=false", "--settle-time", "2"]) == (1, False, 2.0)
    assert au_settings(["--restart-concurrency=2", "--restart-concurrency=8", "--health-gate"]) == (8, True, 3.0)


def test_issue13_preset_and_the_sweep_options() -> None:
    args = parse_args(["--scenario", "issue13", "--bounds", "1,16", "--gate", "off", "--sizes", "500,60"])
    assert args.scenarios == ["sweep", "scale"]
    assert args.stop_range == (0.0, 1.0)  # the issue's services: up to a second to stop
    assert args.stop_range_c == 0.0  # c: the CPU-bound case
    assert args.bounds == [1, 16] and args.gates == [False]
    assert args.scale == [(60, 20), (500, 100)]
    assert parse_args(["--scenario", "b"]).stop_range == 0.0
    with pytest.raises(SystemExit):
        parse_args(["--gate", "maybe"])


def _point(bound: int, gate: bool, wall: float, eff: float, **kw: object) -> dict[str, object]:
    point: dict[str, object] = {
        "tool": "autoupdated",
        "bound": bound,
        "gate": gate,
        "wall_s": wall,
        "efficiency": eff,
        "cpu_floor_s": 5.0,
        "restart_floor_s": 4.0,
        "gate_path_s": 6.0 if gate else 0.0,
        "limit": "CPU",
        "waves": 2,
        "early_followers": 0,
        "follower_wait_median_s": 3.1 if gate else None,
    }
    point.update(kw)
    return point


def test_the_verdicts_say_met_or_not_and_which_floor() -> None:
    podman = {**_point(1, False, 50.0, 0.95), "tool": "podman"}
    points = [
        podman,
        _point(1, True, 52.0, 0.93),
        _point(1, False, 49.0, 0.95),
        _point(4, True, 20.0, 0.8),
        _point(4, False, 13.0, 0.92),
    ]
    results = {"sweeps": {"b": {"points": points, "settle_s": 3.0, "runs": []}}}
    found = issue13_targets(results)

    def verdict(words: str) -> ceiling.Verdict:
        [v] = [v for v in found if words in v.target]
        return v

    eff = verdict("efficiency >= 90 %")
    assert not eff.met and "bound 4, gate on" in eff.why and "CPU floor" in eff.why
    assert verdict("bound 1 no slower").met
    gate = verdict("the gate adds at most")
    assert not gate.met  # bound 4: +7 s with 2 waves of 3 s
    assert "4: +7.00 s of 6 s" in gate.measured and "1: +3.00 s of 6 s" in gate.measured
    # the same floors on and off: the whole difference is the gate's
    assert "beyond each run's own floor: 1: +3.00 s; 4: +7.00 s" in gate.measured
    assert "serialise beyond one settle per wave" in gate.why


def test_a_gate_verdict_missed_because_the_two_runs_floors_differ_says_so() -> None:
    # gate on took 4 CPU-s more than gate off (CPU floor 12 s against 8 s on 2 CPUs): +7 s in
    # wall time, but only +3 s beyond each run's own floor
    points = [_point(4, True, 20.0, 0.9, cpu_floor_s=12.0), _point(4, False, 13.0, 0.9, cpu_floor_s=8.0)]
    found = issue13_targets({"sweeps": {"c": {"points": points, "settle_s": 3.0, "runs": []}}})
    [gate] = [v for v in found if "the gate adds at most" in v.target]
    assert not gate.met, "the verdict itself still compares the two runs' wall times"
    assert "4: +7.00 s of 6 s" in gate.measured and "beyond each run's own floor: 4: +3.00 s" in gate.measured
    assert "their floors differ" in gate.why and "serialise" not in gate.why


def test_the_wrapper_reports_a_commands_own_cpu_and_wall_time(tmp_path: Path) -> None:
    script = tmp_path / "work.py"
    script.write_text(
        "import sys\nsum(range(3_000_000))\nprint('out')\n"
        "sys.stderr.write('run phases: list 0.012 s, images 0.004 s, check 0.301 s; 60 containers, 20 references\\n')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", measure.RUSAGE_WRAPPER, sys.executable, str(script)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout == "out\n"
    stderr, figures = measure.split_rusage(proc.stderr)
    assert figures is not None and figures["user_s"] + figures["sys_s"] > 0 and figures["wall_s"] > 0
    assert "BENCH-RUSAGE" not in stderr
    assert measure.parse_phases(stderr) == {
        "phases": {"list": 0.012, "images": 0.004, "check": 0.301},
        "sizes": {"containers": 60, "references": 20},
    }
    assert measure.split_rusage("no mark") == ("no mark", None)


def test_the_sweep_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from benchmarks import plot

    podman = {**_point(1, False, 50.0, 0.95), "tool": "podman"}
    points = [podman, _point(1, True, 52.0, 0.93), _point(4, True, 20.0, 0.8), _point(4, False, 13.0, 0.92)]
    path = plot.sweep({"points": points}, tmp_path / "sweep.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_module_floor_script_imports_every_module_and_prints_its_rss() -> None:
    """The floor under the idle daemon's RSS: a fresh interpreter that imported all of autoupdated."""
    out = subprocess.run([sys.executable, "-c", measure._FLOOR_SCRIPT], capture_output=True, text=True, check=True)
    rss_kib, anon_kib = (int(v) for v in out.stdout.split())
    assert 20 * 1024 < rss_kib < 200 * 1024 and 0 < anon_kib < rss_kib
    listing = measure._FLOOR_SCRIPT.replace("ctypes.CDLL", "import sys; print(sorted(sys.modules)); ctypes.CDLL")
    imported = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, check=True).stdout
    assert "'autoupdated.daemon.service'" in imported and "'autoupdated.wiring'" in imported


def test_the_rss_verdict_names_the_module_floor() -> None:
    from benchmarks.run import _floor_note

    assert _floor_note({"module_floor": {"rss_mb": 52.0}}, 61.5) == (
        "; module floor 52.0 MB (the imports alone), runs leave +9.5 MB"
    )
    assert _floor_note({}, 61.5) == ""
