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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoupdated.adapters.history import Row

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


def _when(text: str) -> str:
    try:
        return datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


def format_rows(rows: list[Row]) -> str:
    """A table like the report's (columns padded to their widest cell), errors under each row."""
    lines: list[list[str]] = [list(COLUMNS)]
    notes: dict[int, str] = {}
    for row in rows:
        lines.append(
            [
                _when(row.time),
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
    from autoupdated.adapters.history import History, HistoryError

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

    from autoupdated import config
    from autoupdated.adapters.history import HistoryError
    from autoupdated.engine import RunError

    try:
        settings = _settings(args)
    except config.ConfigError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EX_CONFIG
    path = Path(args.db) if args.db else history_path(settings)
    try:
        message = asyncio.run(roll_back(settings, path, args.container))
    except (RollbackError, RunError, HistoryError) as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(message)
    return 0


class RollbackError(Exception):
    """The rollback was refused or did not work; the text says why and what state resulted."""


async def roll_back(settings: Any, path: Path, container: str) -> str:
    """Undo the last recorded image change of `container`; returns what was done."""
    import asyncio
    import dataclasses

    from autoupdated import engine, wiring
    from autoupdated.adapters.history import History
    from autoupdated.daemon import service as daemon
    from autoupdated.engine.recovery import ensure_image
    from autoupdated.model import AUTOUPDATE_LABEL, UNIT_LABEL, ContainerInfo, ImageInfo, Policy, Status

    if not await asyncio.to_thread(path.exists):
        raise RollbackError(f"no history at {path}: there is no recorded update to roll back")
    with History(path, action="rollback") as history:
        row = history.last_change(container)
        if row is None:
            raise RollbackError(
                f"no recorded update changed the image of container {container}: nothing to roll back "
                f"(see `autoupdated history --container {container}`)"
            )
        options = dataclasses.replace(daemon.engine_options(settings), history_path=None, update_failed_units=False)
        adapters = wiring.real_adapters(options)
        try:
            eng = engine.Engine(options, adapters)
            state = await eng.a.podman.container_state(row.container_name)
            if state is not None and state.running and state.image_id == row.old_image_id:
                raise RollbackError(
                    f"container {row.container_name} already runs its previous image {row.old_image_id[:12]} "
                    f"({row.reference}): nothing to roll back"
                )
            if state is not None and state.running and state.image_id != row.new_image_id:
                raise RollbackError(
                    f"container {row.container_name} runs image {state.image_id[:12]}, not {row.new_image_id[:12]} "
                    f"of its last recorded update ({_when(row.time)}): it was changed outside autoupdated; "
                    "not rolling back"
                )
            await eng.connect_bus()
            try:
                policy = Policy(row.policy)
            except ValueError:
                policy = Policy.REGISTRY
            current = ContainerInfo(
                id=state.id if state is not None else row.container_id,
                name=row.container_name,
                image_id=row.new_image_id,
                raw_image_name=row.reference,
                labels={UNIT_LABEL: row.unit, AUTOUPDATE_LABEL: row.policy},
                state="",
            )
            task = engine.Task(current, policy, row.unit, options.authfile)
            task.image = ImageInfo(id=row.new_image_id, digest=row.new_digest)
            task.new_image_id, task.new_digest = row.old_image_id, row.old_digest
            task.status = Status.FAILED
            record = history.intent(row.unit, [task.entry()])
            try:
                await ensure_image(eng, task, row.old_image_id, row.old_digest)
                await eng.a.podman.tag(row.old_image_id, row.reference)
                history.step(record, [task.entry()])
            except Exception as err:
                task.error = f"putting the previous image {row.old_image_id[:12]} back failed: {err}"
                history.outcome(record, [task.entry()])
                raise RollbackError(f"{task.error}; nothing was changed") from None
            try:
                await eng.a.restarter.restart(row.unit)
                await eng.verify_unit(row.unit, [task])
            except Exception as err:
                await eng.roll_back(row.unit, [task], err)
                restored = task.status is Status.ROLLED_BACK
                task.status = Status.FAILED
                task.error = (
                    f"the previous image {row.old_image_id[:12]} did not come up in unit {row.unit}: {err}; "
                    + (
                        f"the current image {row.new_image_id[:12]} was put back"
                        if restored
                        else f"putting the current image back failed too: {'; '.join(eng.result.errors)}"
                    )
                )
                history.outcome(record, [task.entry()])
                raise RollbackError(task.error) from None
            task.status, task.error = Status.ROLLED_BACK, None
            history.outcome(record, [task.entry()])
        finally:
            await adapters.aclose()
    return (
        f"Rolled back container {row.container_name} in unit {row.unit} to its previous image "
        f"{row.old_image_id[:12]} ({row.reference}{', ' + row.old_digest if row.old_digest else ''})"
    )
