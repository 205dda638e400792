"""`autoupdated install [--user] [--dry-run]`: after `pip install`, put the files systemd needs in place.

    unit     /etc/systemd/system/autoupdated.service (--user: ~/.config/systemd/user/), its
             ExecStart= pointing at this installation's `autoupdated`; replaced when it differs
             (local changes belong in a drop-in: `systemctl edit autoupdated`)
    config   /etc/autoupdated.toml (--user: ~/.config/autoupdated/autoupdated.toml), the
             commented example; never replaced when it exists
    catalog  /usr/local/lib/systemd/catalog/autoupdated.catalog, then `journalctl --update-catalog`
             (system install only: the catalog is the machine's)

then `systemctl [--user] daemon-reload`.  `--dry-run` says what it would do and does nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SYSTEM_EXEC = "/usr/local/bin/autoupdated"
USER_EXEC = "%h/.local/bin/autoupdated"


@dataclass(frozen=True, slots=True)
class Step:
    what: str
    path: Path
    text: str
    replace: bool  # False: leave an existing file alone


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    install = subparsers.add_parser(
        "install",
        help="install the systemd unit, the example configuration and the journal catalog",
        description="Put the systemd unit, the example configuration (never over an existing one) and the "
        "journal message catalog in place, then reload systemd.",
    )
    install.add_argument("--user", action="store_true", help="a rootless daemon: systemctl --user")
    install.add_argument("--dry-run", action="store_true", help="only list what would be written and run")
    install.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests: write under this directory
    install.set_defaults(func=cmd_install)


def _data(name: str) -> str:
    return resources.files("autoupdated.data").joinpath(name).read_text(encoding="utf-8")


def executable() -> str | None:
    """This installation's `autoupdated` script: next to the interpreter (a venv), else on PATH."""
    beside = Path(sys.executable).parent / "autoupdated"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("autoupdated")


def plan(user: bool, root: Path, home: Path, program: str | None) -> list[Step]:
    def under(path: Path) -> Path:
        return root / path.relative_to("/")

    if user:
        unit = _data("user/autoupdated.service")
        if program:
            unit = unit.replace(f"ExecStart={USER_EXEC} ", f"ExecStart={program} ")
        return [
            Step("unit", under(home / ".config/systemd/user/autoupdated.service"), unit, True),
            Step("config", under(home / ".config/autoupdated/autoupdated.toml"), _data("autoupdated.toml"), False),
        ]
    unit = _data("autoupdated.service")
    if program:
        unit = unit.replace(f"ExecStart={SYSTEM_EXEC} ", f"ExecStart={program} ")
    return [
        Step("unit", under(Path("/etc/systemd/system/autoupdated.service")), unit, True),
        Step("config", under(Path("/etc/autoupdated.toml")), _data("autoupdated.toml"), False),
        Step(
            "catalog",
            under(Path("/usr/local/lib/systemd/catalog/autoupdated.catalog")),
            _data("autoupdated.catalog"),
            True,
        ),
    ]


def commands(user: bool) -> list[list[str]]:
    if user:
        return [["systemctl", "--user", "daemon-reload"]]
    return [["journalctl", "--update-catalog"], ["systemctl", "daemon-reload"]]


def _write(step: Step) -> str:
    if step.path.exists():
        current = step.path.read_text(encoding="utf-8", errors="replace")
        if current == step.text:
            return "unchanged"
        if not step.replace:
            return "exists, left alone"
    step.path.parent.mkdir(parents=True, exist_ok=True)
    partial = step.path.with_name(step.path.name + ".part")
    partial.write_text(step.text, encoding="utf-8")
    os.chmod(partial, 0o644)
    existed = step.path.exists()
    os.replace(partial, step.path)
    return "replaced" if existed else "written"


def cmd_install(args: argparse.Namespace) -> int:
    if not args.user and os.geteuid() != 0 and args.root == "/" and not args.dry_run:
        print("autoupdated: install: a system install needs root (sudo), or use --user", file=sys.stderr)
        return 1
    program = executable()
    steps = plan(args.user, Path(args.root), Path.home(), program)
    if program is None:
        print("autoupdated: warning: no `autoupdated` program found; the unit keeps its ExecStart=", file=sys.stderr)
    for step in steps:
        if args.dry_run:
            state = "exists, would be left alone" if step.path.exists() and not step.replace else "would write"
            print(f"{step.what}: {step.path} ({state})")
        else:
            print(f"{step.what}: {step.path} ({_write(step)})")
    failed = False
    for argv in commands(args.user):
        if args.dry_run or args.root != "/":
            print(f"{'would run' if args.dry_run else 'skipped (--root)'}: {' '.join(argv)}")
            continue
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        print(f"ran: {' '.join(argv)}" + ("" if done.returncode == 0 else f" (exit {done.returncode})"))
        if done.returncode != 0:
            failed = True
            print(f"autoupdated: {' '.join(argv)}: {done.stderr.strip()}", file=sys.stderr)
    if not args.dry_run:
        scope = "--user " if args.user else ""
        print(f"next: edit the config, `autoupdated config check`, then `systemctl {scope}enable --now autoupdated`")
    return 1 if failed else 0
