"""The `autoupdated` command line.

`autoupdated check` is `podman auto-update` (same flags, output and exit codes);
the daemon's subcommands (`run`, `trigger`, `status`, `config`) come from
cli_daemon.  Imports of the heavy parts happen inside the commands, so
`autoupdated --help` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoupdated.controls.model import ControlsConfig

EXIT_ERROR = 125  # podman's exit status when anything failed


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}: use true or false")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


class _BelowError(logging.Filter):
    """Errors are printed once, at the end, as podman does; everything else as it happens."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_BelowError())
    root = logging.getLogger("autoupdated")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(getattr(logging, level.upper(), logging.WARNING))
    logging.getLogger("autoupdated.progress").setLevel(logging.INFO)


def add_check(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = subparsers.add_parser(
        "check",
        help="run the update job once, like `podman auto-update`",
        description="Check, pull and restart every labelled container once, as `podman auto-update` does.",
    )
    check.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    check.add_argument("--authfile", help="auth file for registries (the container label overrides it)")
    check.add_argument("--dry-run", action="store_true", help="only check; report pending updates")
    check.add_argument(
        "--rollback", type=parse_bool, nargs="?", const=True, default=True, help="roll back a failed update (true)"
    )
    check.add_argument("--format", default="", help='"json", "table", or a template like "{{.Unit}},{{.Updated}}"')
    check.add_argument(
        "--tls-verify",
        type=parse_bool,
        nargs="?",
        const=True,
        default=None,
        help="require HTTPS and verified certificates (default: as registries.conf says)",
    )
    check.add_argument("--url", help="podman service URL (default: CONTAINER_HOST or podman's socket)")
    check.add_argument("--bus", choices=("system", "session"), help="D-Bus to restart units on (default: by user)")
    check.add_argument("--check-concurrency", type=_positive, default=16, help="registry checks at once per registry")
    check.add_argument("--pull-concurrency", type=_positive, default=4, help="pulls at once")
    check.add_argument("--restart-concurrency", type=_positive, default=4, help="unit restarts at once (1 = podman)")
    check.add_argument("--restart-timeout", type=_seconds, default=300.0, help="seconds to wait for a restart job")
    check.add_argument(
        "--health-gate",
        type=parse_bool,
        nargs="?",
        const=True,
        default=True,
        help="only call an update done when the new container is healthy or stays up; else roll back (true)",
    )
    check.add_argument(
        "--settle-time", type=_seconds, default=3.0, help="seconds a container without healthcheck must stay up"
    )
    check.add_argument(
        "--health-timeout", type=_seconds, default=60.0, help="seconds to wait for a healthcheck to pass"
    )
    check.add_argument(
        "--history-db", metavar="PATH", help="record the updates in this history database (default: none)"
    )
    check.add_argument(
        "--ignore-windows", action="store_true", help="restart now even outside the configured restart windows"
    )
    check.add_argument(
        "--config",
        metavar="PATH",
        help="operator controls from this file (default: /etc/autoupdated.toml if it exists)",
    )
    check.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    check.add_argument(
        "--timings", action="store_true", help="print what each step of the run took (one line on stderr)"
    )
    check.set_defaults(func=cmd_check)


def wake_podman_service(url: str | None) -> None:
    """Knock on the podman socket, so that systemd starts a socket-activated service (about
    0.1 s) while Python loads the engine, instead of when the engine first asks.  Best effort."""
    import socket

    from autoupdated.adapters.podman import default_url

    target = url or default_url()
    if not target.startswith("unix://"):
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            sock.connect(target[len("unix://") :])
    except OSError:
        pass


def _controls(path: str | None) -> ControlsConfig | str:
    """The operator controls of the config file (docs/controls.md), or the config's error text."""
    from pathlib import Path

    from autoupdated.controls.model import ControlsConfig

    file = Path(path) if path else Path(os.environ.get("AUTOUPDATED_CONFIG") or "/etc/autoupdated.toml")
    if not path and not file.exists():
        return ControlsConfig()
    from autoupdated import config

    try:
        return config.load(file, required=True).settings.controls_config
    except config.ConfigError as err:
        return str(err)


def cmd_check(args: argparse.Namespace) -> int:
    if args.extra:
        print("Error: `autoupdated check` takes no arguments", file=sys.stderr)
        return EXIT_ERROR
    wake_podman_service(args.url)
    setup_logging(args.log_level)
    if args.timings:
        logging.getLogger("autoupdated.timings").setLevel(logging.DEBUG)
    authfile = args.authfile or os.environ.get("REGISTRY_AUTH_FILE") or None
    if args.authfile is not None and not os.path.exists(args.authfile):
        print(f"Error: checking authfile: stat {args.authfile}: no such file or directory", file=sys.stderr)
        return EXIT_ERROR

    import asyncio

    from autoupdated import wiring
    from autoupdated.engine import Options
    from autoupdated.errors import RunError
    from autoupdated.report import FormatError, render, row

    controls = _controls(args.config)
    if isinstance(controls, str):
        print(f"Error: {controls}", file=sys.stderr)
        return EXIT_ERROR
    options = Options(
        controls=controls,
        ignore_windows=args.ignore_windows,
        dry_run=args.dry_run,
        rollback=args.rollback,
        authfile=authfile,
        tls_verify=args.tls_verify,
        podman_url=args.url,
        bus=args.bus,
        check_concurrency=args.check_concurrency,
        pull_concurrency=args.pull_concurrency,
        restart_concurrency=args.restart_concurrency,
        restart_timeout=args.restart_timeout,
        health_gate=args.health_gate,
        settle_time=args.settle_time,
        health_timeout=args.health_timeout,
        history_path=args.history_db,
    )
    try:
        result = asyncio.run(wiring.run(options))
    except RunError as err:
        print(f"Error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    errors = list(result.errors)
    if result.entries:
        try:
            rows = [
                row(e.unit, e.container_id, e.container_name, e.image, e.policy, str(e.updated)) for e in result.entries
            ]
            sys.stdout.write(render(rows, args.format))
            sys.stdout.flush()
        except FormatError as err:
            errors.append(str(err))
    for message in errors:
        print(f"Error: {message}", file=sys.stderr)
    return EXIT_ERROR if errors else 0


def build_parser() -> argparse.ArgumentParser:
    from autoupdated import __version__

    parser = argparse.ArgumentParser(
        prog="autoupdated",
        description="Keep Podman containers under systemd up to date, safely.",
    )
    parser.add_argument("--version", action="version", version=f"autoupdated {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_check(subparsers)
    import importlib

    try:
        cli_daemon = importlib.import_module("autoupdated.cli.daemon")
    except ModuleNotFoundError:
        pass  # a build without the daemon: `check` alone
    else:
        cli_daemon.add_subcommands(subparsers)
    importlib.import_module("autoupdated.cli.history").add_subcommands(subparsers)
    importlib.import_module("autoupdated.cli.notify").add_subcommands(subparsers)
    importlib.import_module("autoupdated.cli.install").add_subcommands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    result: int = args.func(args)
    return result


def console() -> None:
    """The `autoupdated` program (console script and `python -m autoupdated`).

    After `check`, leave without the interpreter's teardown: the report is written, the journal
    entries sent and every connection closed by then, and tearing down the modules of asyncio,
    httpx and podman-py took 50-80 ms, more than the whole registry check of a few images.
    Other commands (the daemon) exit the usual way.
    """
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] == ["check"]:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                code = code or EXIT_ERROR
        os._exit(code)
    sys.exit(code)
