"""Runs operator hooks (`[hooks.NAME] command = [...]` in the root-owned config only): no shell,
the daemon's environment plus the AUTOUPDATED_* variables naming the container, unit, image and
digests, stdout and stderr captured together, killed at the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os

from autoupdated.controls.model import Hook, HookResult

MAX_OUTPUT = 64 * 1024


class HookRunner:
    async def run(self, hook: Hook, env: dict[str, str]) -> HookResult:
        try:
            proc = await asyncio.create_subprocess_exec(
                *hook.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )
        except OSError as err:
            return HookResult(None, "", f"could not start {hook.command[0]!r}: {err.strerror or err}")
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), hook.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            return HookResult(None, "", f"timed out after {hook.timeout:g} s (killed)")
        text = out[-MAX_OUTPUT:].decode("utf-8", "replace")
        return HookResult(proc.returncode, text)
