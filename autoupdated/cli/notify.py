"""`autoupdated notify test`: a test message to every configured [[notify]] target.

Prints one line per URL (masked: never its token) and exits 1 when any failed, 78 when the
configuration is wrong, so it fits in a deployment script.
"""

from __future__ import annotations

import argparse
import sys

EX_CONFIG = 78


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notify = subparsers.add_parser("notify", help="notifications: send a test message")

    def usage(args: argparse.Namespace) -> int:
        notify.print_help(sys.stderr)
        return 2

    notify.set_defaults(func=usage)
    sub = notify.add_subparsers(dest="notify_command", metavar="COMMAND")
    test = sub.add_parser(
        "test",
        help="send a test message to every [[notify]] target and report each result",
        description="Send a test message to every [[notify]] target of the configuration; exit 1 if any failed.",
    )
    test.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help="configuration file")
    test.set_defaults(func=cmd_notify_test)


def cmd_notify_test(args: argparse.Namespace) -> int:
    import asyncio

    from autoupdated import config
    from autoupdated.daemon.notifications import probe

    try:
        loaded = config.load(getattr(args, "config", None))
    except config.ConfigError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return EX_CONFIG
    if not loaded.settings.notify:
        print(f"autoupdated: {loaded.path}: no [[notify]] entry; see docs/notifications.md", file=sys.stderr)
        return 1
    results = asyncio.run(probe(loaded.settings))
    failed = 0
    for label, delivery in results:
        if delivery.ok:
            print(f"{label}: {delivery.where}: sent")
        else:
            failed += 1
            print(f"{label}: {delivery.where}: FAILED after {delivery.attempts} tries: {delivery.reason}")
    print(f"{len(results) - failed} of {len(results)} sent")
    return 1 if failed else 0
