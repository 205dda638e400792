"""Part 3 of the engine: pull each changed reference once, through podman.

Pulls go through the podman service (its storage, its registries.conf), with the
credentials and TLS choice the digest check used.  Concurrent pulls are bounded;
a reference asked for twice in one run is pulled once and both callers get the
same image ID (or the same error).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from autoupdated.model import Credentials

progress = logging.getLogger("autoupdated.progress")


class PullPort(Protocol):
    """What pulls (the podman adapter): always pulls, returns the image ID."""

    async def pull(self, reference: str, *, credentials: Credentials | None, tls_verify: bool | None) -> str: ...


class PullError(Exception):
    """Podman could not pull the image; the text is podman's, with the reference."""


class Puller:
    def __init__(self, podman: PullPort, concurrency: int = 4) -> None:
        self.podman = podman
        self._bound = asyncio.Semaphore(max(1, concurrency))
        self._pulls: dict[str, asyncio.Future[str]] = {}
        self.pulled: list[str] = []

    async def pull(self, reference: str, *, credentials: Credentials | None, tls_verify: bool | None) -> str:
        """Pull `reference` unless this run pulled it already; returns the new image ID."""
        future = self._pulls.get(reference)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pulls[reference] = future
            try:
                async with self._bound:
                    progress.info("Trying to pull %s...", reference)
                    image_id = await self.podman.pull(reference, credentials=credentials, tls_verify=tls_verify)
            except Exception as err:
                future.set_exception(PullError(f'pulling "{reference}": {err}'))
            else:
                self.pulled.append(reference)
                future.set_result(image_id)
        return await asyncio.shield(future)
