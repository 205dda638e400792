"""`autoupdated history` and `autoupdated rollback CONTAINER`.

    autoupdated history [--container NAME] [--format table|json] [--limit N]
    autoupdated rollback CONTAINER

`history` reads the daemon's history database (read-only, safe while the daemon writes).
`rollback` puts the image a container ran before its last recorded update back: the old image
(pulled again by digest if it was pruned) is tagged with the container's reference, the unit is
restarted over D-Bus and must pass the health gate; if it does not, the current image is put back.
The rollback is recorded in the history like an update (action `rollback`), so a crash in the
middle of it is finished by the daemon's recovery like any other.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoupdated.model import Row

EXIT_FAILED = 1
EX_CONFIG = 78
COLUMNS = ("TIME", "ACTION", "UNIT", "CONTAINER", "IMAGE", "OLD IMAGE", "NEW IMAGE", "RESULT")


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config_help = "configuration file (default: /etc/autoupdated.toml); gives the state directory"
    history = subparsers.add_parser(
        "history",
        help="the recorded updates and rollbacks, oldest first",
        description="Show the update history the daemon records in its state directory (history.db).",
    )
    history.add_argument("--container", metavar="NAME", help="only this container (name or ID prefix)")
    history.add_argument("--format", choices=("table", "json"), default="table")
    history.add_argument("--limit", type=int, default=None, metavar="N", help="only the newest N rows")
    history.add_argument("--db", metavar="PATH", help="history database (default: STATE_DIR/history.db)")
    history.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help=config_help)
    history.set_defaults(func=cmd_history)

    rollback = subparsers.add_parser(
        "rollback",
        help="put the previous image of a container back (re-tag, restart, health gate)",
        description="Undo the last recorded update of CONTAINER: tag its previous image with its reference "
        "again, restart its unit and check it comes up; if it does not, the current image is put back.",
    )
    rollback.add_argument("container", metavar="CONTAINER", help="container name (or ID prefix)")
    rollback.add_argument("--db", metavar="PATH", help="history database (default: STATE_DIR/history.db)")
    rollback.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help=config_help)
    rollback.set_defaults(func=cmd_rollback)


def _settings(args: argparse.Namespace) -> Any:
    from autoupdated import config

    path = getattr(args, "config", None)
    return config.load(str(path) if path else None).settings


def history_path(settings: Any) -> Path:
    """The `history_db` key, else STATE_DIR/history.db (also when `history = false`: old records)."""
    from autoupdated import config
    from autoupdated.adapters.history import DB_NAME

    return config.history_path(settings) or config.state_dir(settings) / DB_NAME


def _db_path(args: argparse.Namespace) -> Path | int:
    from autoupdated import config

    if args.db:
        return Path(args.db)
    try:
        return history_path(_settings(args))
    except config.ConfigError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EX_CONFIG


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12] or "-"


def format_rows(rows: list[Row]) -> str:
    """A table like the report's (columns padded to their widest cell), errors under each row."""
    from autoupdated.engine.rollback import local_time

    lines: list[list[str]] = [list(COLUMNS)]
    notes: dict[int, str] = {}
    for row in rows:
        lines.append(
            [
                local_time(row.time),
                row.action,
                row.unit,
                f"{row.container_id[:12]} ({row.container_name})",
                row.reference,
                _short(row.old_image_id),
                _short(row.new_image_id),
                row.result,
            ]
        )
        if row.error:
            notes[len(lines) - 1] = row.error
    widths = [max(len(line[i]) for line in lines) + 2 for i in range(len(COLUMNS) - 1)]
    out = []
    for index, line in enumerate(lines):
        out.append(("".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + line[-1]).rstrip())
        if index in notes:
            out.append(f"    error: {notes[index]}")
    return "\n".join(out)


def cmd_history(args: argparse.Namespace) -> int:
    from autoupdated.adapters.history import History
    from autoupdated.errors import HistoryError

    path = _db_path(args)
    if isinstance(path, int):
        return path
    if not path.exists():
        print(f"autoupdated: no history yet ({path} does not exist)", file=sys.stderr)
        if args.format == "json":
            print("[]")
        return 0
    try:
        with History(path, readonly=True) as history:
            rows = history.rows(args.container, limit=args.limit)
    except HistoryError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EXIT_FAILED
    if args.format == "json":
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    elif rows:
        print(format_rows(rows))
    elif args.container:
        print(f"no recorded update of container {args.container}", file=sys.stderr)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    import asyncio

    from autoupdated import config, wiring
    from autoupdated.daemon.service import engine_options
    from autoupdated.engine.rollback import RollbackError
    from autoupdated.errors import HistoryError, RunError

    try:
        settings = _settings(args)
    except config.ConfigError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EX_CONFIG
    path = Path(args.db) if args.db else history_path(settings)
    if not path.exists():
        print(f"autoupdated: no history at {path}: there is no recorded update to roll back", file=sys.stderr)
        return EXIT_FAILED
    try:
        message = asyncio.run(wiring.roll_back(engine_options(settings), path, args.container))
    except (RollbackError, RunError, HistoryError) as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(message)
    return 0
