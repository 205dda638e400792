"""httpcore asks for sniffio on every request; where it is not installed the registry adapter
records its absence once, so that ask is no longer a failed import walking sys.path."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib.util, sys, time
absent = importlib.util.find_spec("sniffio") is None
import autoupdated.adapters.registry.transport
def ask():
    try:
        import sniffio  # noqa: F401
    except ImportError:
        pass
t = time.perf_counter()
for _ in range(2000):
    ask()
print(absent, sys.modules.get("sniffio", "missing") is None, (time.perf_counter() - t) / 2000)
"""


def test_a_missing_sniffio_is_asked_for_at_once() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout.split()
    absent, cached, per_ask = out[0] == "True", out[1] == "True", float(out[2])
    if not absent:
        assert not cached  # installed: left alone
        return
    assert cached
    assert per_ask < 50e-6  # a failed import walking sys.path takes 100-300 us here
