"""The sweep's plot: wall time against the restart bound, beside podman and the floors (issue 13).

One PNG per swept fleet, next to the results JSON.  matplotlib's Agg backend (no display);
matplotlib comes with the `bench` extra (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def sweep(sw: dict[str, Any], path: Path, *, title: str) -> Path:
    """Wall time of autoupdated (gate on, gate off) at each bound; podman's wall time (a line:
    it has no bound); the floors each run measured (CPU, restart) and floor + gate path."""
    points = sw["points"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for gate, colour in ((True, "tab:blue"), (False, "tab:green")):
        ps = sorted((p for p in points if p["tool"] == "autoupdated" and p["gate"] == gate), key=lambda p: p["bound"])
        if not ps:
            continue
        label = "gate on" if gate else "gate off"
        bounds = [p["bound"] for p in ps]
        ax.plot(bounds, [p["wall_s"] for p in ps], "o-", color=colour, label=f"autoupdated, {label}")
        ceiling = [max(p["cpu_floor_s"], p["restart_floor_s"]) + p["gate_path_s"] for p in ps]
        ax.plot(bounds, ceiling, ":", color=colour, label=f"floor + gate path, {label}")
        if gate:
            ax.plot(bounds, [p["cpu_floor_s"] for p in ps], "v--", color="tab:red", alpha=0.6, label="CPU floor")
            ax.plot(
                bounds, [p["restart_floor_s"] for p in ps], "^--", color="tab:purple", alpha=0.6, label="restart floor"
            )
    for p in points:
        if p["tool"] == "podman":
            ax.axhline(p["wall_s"], color="black", linewidth=1.5, label=f"podman auto-update ({p['wall_s']:.1f} s)")
            break
    ax.set_xscale("log", base=2)
    bounds = sorted({p["bound"] for p in points if p["tool"] == "autoupdated"})
    if bounds:
        ax.set_xticks(bounds, [str(b) for b in bounds])
    ax.set_xlabel("restart bound (--restart-concurrency)")
    ax.set_ylabel("wall time (s)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
