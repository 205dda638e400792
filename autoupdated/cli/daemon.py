"""The daemon's subcommands: `run`, `trigger`, `status`, `config check [PATH]`, `config show`.

Only argparse is imported here; each command imports what it needs when it runs, so
`autoupdated check` and `--help` do not pay for pydantic or APScheduler.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EX_CONFIG = 78  # sysexits.h: configuration error
EXIT_RUN_FAILED = 1


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config_help = (
        "configuration file (default: /etc/autoupdated.toml; rootless: ~/.config/autoupdated/autoupdated.toml)"
    )

    run = subparsers.add_parser(
        "run",
        help="run the daemon in the foreground (what systemd starts)",
        description="Run the update job on the configured schedule until stopped. For systemd: Type=notify.",
    )
    run.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help=config_help)
    run.set_defaults(func=cmd_run)

    trigger = subparsers.add_parser(
        "trigger",
        help="ask the running daemon for a run now",
        description="Ask the running daemon for a run now. During a run, the request is merged into one "
        "run right after it.",
    )
    trigger.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help=config_help)
    trigger.add_argument("--wait", action="store_true", help="wait for the run to finish and print its outcome")
    trigger.add_argument("--format", choices=("table", "json"), default="table", help="output with --wait")
    trigger.set_defaults(func=cmd_trigger)

    status = subparsers.add_parser(
        "status",
        help="last run, next run and the outcome per container",
        description="Ask the running daemon (or read its state file when it is not running).",
    )
    status.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help=config_help)
    status.add_argument("--format", choices=("table", "json"), default="table")
    status.set_defaults(func=cmd_status)

    approve = subparsers.add_parser(
        "approve",
        help="let an update that waits for approval (mode approve) restart its unit now",
        description="Approve the update a container (or every container of a unit) waits for; the daemon "
        "restarts it through the normal restart, health gate and rollback.  With --digest, the approval "
        "is refused if the waiting image has moved since.",
    )
    approve.add_argument("target", metavar="CONTAINER|UNIT")
    approve.add_argument("--digest", help="the digest you approve (as `autoupdated status` shows it)")
    approve.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help=config_help)
    approve.set_defaults(func=cmd_approve)

    config = subparsers.add_parser("config", help="check or show the configuration")

    def config_usage(args: argparse.Namespace) -> int:
        config.print_help(sys.stderr)
        return 2

    config.set_defaults(func=config_usage)
    config_sub = config.add_subparsers(dest="config_command", metavar="COMMAND")
    check = config_sub.add_parser(
        "check",
        help="validate a configuration file (exit 78 when invalid)",
        description="Validate the configuration file (and AUTOUPDATED_* variables). Exit status 78 when invalid.",
    )
    check.add_argument("path", nargs="?", metavar="PATH", help="file to check (default: the daemon's)")
    check.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help=argparse.SUPPRESS)
    check.set_defaults(func=cmd_config_check)
    show = config_sub.add_parser(
        "show",
        help="print the effective configuration and where each value comes from",
        description="Print every key's effective value and its source: default, file or env.",
    )
    show.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help=config_help)
    show.add_argument("--format", choices=("toml", "json"), default="toml")
    show.set_defaults(func=cmd_config_show)


def _config_path(args: argparse.Namespace) -> str | None:
    path = getattr(args, "config", None)
    return str(path) if path else None


def cmd_run(args: argparse.Namespace) -> int:
    from autoupdated.daemon import service as daemon

    return daemon.main(_config_path(args))


def cmd_config_check(args: argparse.Namespace) -> int:
    from autoupdated import config

    path = args.path or _config_path(args)
    try:
        loaded = config.load(path, required=args.path is not None)
    except config.ConfigError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EX_CONFIG
    _print_warnings(loaded.warnings)
    if loaded.file_found:
        print(f"{loaded.path}: OK")
    else:
        print(f"{loaded.path}: not found; the defaults apply (and they are valid)")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from autoupdated import config

    try:
        loaded = config.load(_config_path(args))
    except config.ConfigError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EX_CONFIG
    _print_warnings(loaded.warnings)
    print(config.render(loaded, args.format))
    return 0


def _print_warnings(warnings: tuple[str, ...]) -> None:
    """Warnings go to stderr: `config show`'s stdout stays valid TOML or JSON."""
    for warning in warnings:
        print(f"autoupdated: warning: {warning}", file=sys.stderr)


def _settings(args: argparse.Namespace) -> Any:
    """The settings that locate the daemon's socket and state.

    A broken file must not hide the running daemon (it keeps its old configuration after a
    rejected reload), so the defaults are used, with a warning, when the file is invalid.
    """
    from autoupdated import config

    try:
        return config.load(_config_path(args)).settings
    except config.ConfigError as err:
        print(
            f"autoupdated: warning: {err}\nautoupdated: warning: using the default socket and state directory",
            file=sys.stderr,
        )
        return config.Settings.model_construct()


def cmd_trigger(args: argparse.Namespace) -> int:
    from autoupdated import config
    from autoupdated.adapters import control

    settings = _settings(args)
    path = config.control_socket(settings)
    try:
        reply = control.request(path, {"command": "trigger", "wait": args.wait}, timeout=None if args.wait else 10)
    except control.ControlError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if not reply.get("ok"):
        print(f"autoupdated: the daemon refused: {reply.get('error')}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if not args.wait:
        if reply.get("accepted") == "queued":
            print(f"Run {reply.get('run')} queued: it starts when the run in progress finishes")
        else:
            print(f"Run {reply.get('run')} started")
        return 0
    result = reply.get("result") or {}
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(format_run(result))
    return 0 if result.get("ok") else EXIT_RUN_FAILED


def cmd_approve(args: argparse.Namespace) -> int:
    from autoupdated import config
    from autoupdated.adapters import control

    path = config.control_socket(_settings(args))
    message = {"command": "approve", "target": args.target, "digest": args.digest or ""}
    try:
        reply = control.request(path, message, timeout=None)
    except control.ControlError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if not reply.get("ok"):
        print(f"autoupdated: approval refused: {reply.get('error')}", file=sys.stderr)
        return EXIT_RUN_FAILED
    entries = [e for e in _items(reply.get("entries")) if isinstance(e, dict)]
    for entry in entries:
        line = f"{entry.get('container_name')}: {entry.get('updated')} (run {reply.get('run')})"
        if entry.get("error"):
            line += f": {entry['error']}"
        print(line)
    return 0 if entries and all(e.get("updated") == "true" for e in entries) else EXIT_RUN_FAILED


def format_held(held: object) -> list[str]:
    """What the operator controls hold, with the command to approve where one is needed."""
    lines = []
    for item in _items(held):
        if not isinstance(item, dict):
            continue
        if item.get("error"):
            lines.append(f"  error: {item['error']}")
            continue
        lines.append(
            f"  {item.get('container')} ({item.get('unit')}): waits for {item.get('waits_for')}: {item.get('reason')}"
        )
        if item.get("approve"):
            lines.append(f"    approve: {item['approve']}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    from autoupdated import config
    from autoupdated.adapters import control
    from autoupdated.adapters.state import StateDir

    settings = _settings(args)
    path = config.control_socket(settings)
    try:
        status = control.request(path, {"command": "status"})
    except control.ControlError as err:
        state = StateDir(config.state_dir(settings))
        status = {
            "ok": True,
            "daemon": None,
            "daemon_error": str(err),
            "current_run": None,
            "queued_run": None,
            "next_run": None,
            "last_run": state.read_last_run(),
        }
    if args.format == "json":
        print(json.dumps(status, indent=2))
    else:
        print(format_status(status))
    return 0


def _when(text: object) -> str:
    if not text:
        return "none"
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(text)).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    except ValueError:
        return str(text)


def format_run(run: dict[str, Any]) -> str:
    """A finished run: one summary line, then podman's table of containers.

    The record may come from last-run.json on disk: every stored value is printed as data, and a
    record of the wrong shape is reported, not a traceback.
    """
    from autoupdated.report import render, row

    if not run:
        return "no run yet"
    if not isinstance(run, dict):
        return f"unreadable run record ({type(run).__name__}, not an object)"
    verdict = "ok" if run.get("ok") else "FAILED"
    lines = [
        f"Run {run.get('run')} ({run.get('reason')}), {_when(run.get('started'))}: {verdict}: {run.get('summary')}"
        + (" [dry run]" if run.get("dry_run") else "")
    ]
    if run.get("error") and run.get("error") != run.get("summary"):
        lines.append(f"  error: {run['error']}")
    for message in _items(run.get("errors")):
        lines.append(f"  error: {message}")
    for message in _items(run.get("warnings")):
        lines.append(f"  warning: {message}")
    entries = [e for e in _items(run.get("entries")) if isinstance(e, dict)]
    if entries:
        rows = [
            row(
                str(e.get("unit") or ""),
                str(e.get("container_id") or ""),
                str(e.get("container_name") or ""),
                str(e.get("image") or ""),
                str(e.get("policy") or ""),
                str(e.get("updated") or ""),
            )
            for e in entries
        ]
        lines.append("")
        lines.append(render(rows).rstrip("\n"))
    return "\n".join(lines)


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def format_status(status: dict[str, Any]) -> str:
    daemon = status.get("daemon")
    lines = []
    if isinstance(daemon, dict):
        state = daemon.get("state", "?")
        current = status.get("current_run")
        if isinstance(current, dict):
            state = f"running run {current.get('run')} ({current.get('reason')}) since {_when(current.get('started'))}"
        lines.append(f"Daemon:   running (pid {daemon.get('pid')}), {state}")
        lines.append(f"Config:   {daemon.get('config')}")
        delay = daemon.get("randomized_delay") or 0
        delay_text = f"{delay:g}" if isinstance(delay, int | float) else str(delay)
        lines.append(
            f"Schedule: {daemon.get('schedule')} (randomized delay up to {delay_text} s)"
            + (" [dry run]" if daemon.get("dry_run") else "")
        )
        if status.get("queued_run"):
            lines.append(f"Queued:   run {status['queued_run']}, after the run in progress")
        lines.append(f"Next run: {_when(status.get('next_run'))}")
        for item in _items(status.get("new_tags")):
            if isinstance(item, dict) and isinstance(item.get("newer"), list) and item["newer"]:
                lines.append(f"New tag:  {item.get('container')} ({item.get('image')}): {item['newer'][0]} available")
        held = format_held(status.get("held"))
        if held:
            lines.append(
                "Waiting:" + (f" (wake-up {_when(status.get('held_wakeup'))})" if status.get("held_wakeup") else "")
            )
            lines.extend(held)
    else:
        lines.append(f"Daemon:   not running ({status.get('daemon_error')})")
    last = status.get("last_run")
    lines.append("Last run: " + ("none yet" if not last else ""))
    text = "\n".join(lines)
    if last:
        text = text + format_run(last)
    return text
