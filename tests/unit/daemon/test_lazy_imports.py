"""The daemon holds no notification library it does not use: Apprise (about 17 MB with its
plugins, 3 MB beyond what the daemon loads anyway) is imported at the first send only."""

from __future__ import annotations

import subprocess
import sys


def test_the_daemon_and_a_check_load_without_apprise() -> None:
    code = (
        "import sys, autoupdated.daemon.service, autoupdated.wiring, autoupdated.cli.daemon; "
        "print('apprise' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
