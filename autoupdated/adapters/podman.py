"""The podman adapter: the few REST calls the engine needs, over podman-py.

Every failure leaves this module as a PodmanError (PodmanUnavailable when the service cannot be
reached, NoSuchObject for a 404), mapped in `_call` alone, with every credential this adapter
was handed scrubbed out: podman relays registry errors, and registries echo what they were sent.

podman-py is synchronous (requests); the engine is async, so each call runs in a
worker thread.  Calls are kept few on purpose: one list call gives every labelled
container with its labels and image, one list call gives every image with its
digests; nothing is inspected per container unless it is in a pod.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from podman import PodmanClient
from podman.errors import APIError

from autoupdated.errors import NoSuchObject, PodmanError, PodmanUnavailable
from autoupdated.model import (
    AUTOUPDATE_LABEL,
    ContainerInfo,
    ContainerState,
    Credentials,
    ImageInfo,
    Platform,
    PruneReport,
)
from autoupdated.secrets import Secrets

ROOT_SOCKET = "unix:///run/podman/podman.sock"
# Seconds to wait before each new try of a repeatable call whose connection was lost.
RETRY_DELAYS = (0.25, 1.0)


def default_url() -> str:
    """Where podman itself would connect: CONTAINER_HOST, else the root or rootless socket."""
    if url := os.environ.get("CONTAINER_HOST"):
        return url
    if os.geteuid() == 0:
        return ROOT_SOCKET
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return f"unix://{runtime_dir}/podman/podman.sock"


def _explain(err: BaseException) -> str:
    text = getattr(err, "explanation", None) or str(err)
    return str(text).strip() or type(err).__name__


def encode_auth(credentials: Credentials) -> str:
    """The X-Registry-Auth header podman's API reads (docker's AuthConfig, base64url JSON)."""
    if credentials.identity_token:
        payload = {"identitytoken": credentials.identity_token}
    else:
        payload = {"username": credentials.username, "password": credentials.password}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


class Podman:
    """Thin async facade over one podman service."""

    def __init__(self, url: str | None = None, timeout: float = 300.0) -> None:
        self.url = url or default_url()
        self.timeout = timeout
        self._local = threading.local()
        self.secrets = Secrets()

    # podman-py's client sits on a requests.Session, which is not meant to be shared
    # between threads: keep one per worker thread.
    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            client = PodmanClient(base_url=self.url, timeout=self.timeout)
            api = self._local.api = client.api
        return api

    def _call(self, method: str, path: str, *, again: bool | None = None, **kwargs: Any) -> Any:
        """One API call; a call that can be repeated (`again`, by default a GET) is tried again
        after RETRY_DELAYS when the connection is lost.

        The service can go away under a run: a socket-activated one exits when idle, an upgrade
        restarts it, a crash kills it.  The request in flight then fails with "connection reset",
        and the socket starts a fresh service for the next one (measured on podman 4.3: one
        failed request per kill).  Without a second try, one health poll that met the restart
        rolled back an update that had started fine.  A pull is not repeated: it is long, and
        the next run pulls again.
        """
        delays = iter(RETRY_DELAYS if (method == "get" if again is None else again) else ())
        while True:
            try:
                return self._call_once(method, path, **kwargs)
            except PodmanUnavailable:
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)

    def _call_once(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = getattr(self._api(), method)(path, **kwargs)
        except APIError as err:
            if isinstance(err.__cause__, OSError):
                raise PodmanUnavailable(self._unreachable(err.__cause__)) from None
            raise PodmanError(self.secrets.scrub(_explain(err))) from None
        except OSError as err:
            raise PodmanUnavailable(self._unreachable(err)) from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
            kind = NoSuchObject if response.status_code == 404 else PodmanError
            raise kind(self.secrets.scrub(str(message).strip()))
        return response

    def _unreachable(self, err: BaseException) -> str:
        reason = _root_cause(err)
        return (
            f"cannot reach the podman service at {self.url}: {reason}; start it with "
            "`systemctl enable --now podman.socket` (or `systemctl --user ...` rootless), "
            "or point --url / CONTAINER_HOST at it"
        )

    async def _run(self, method: str, path: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._call, method, path, **kwargs)

    async def ping(self) -> None:
        await self._run("get", "/_ping")

    async def labelled_containers(self) -> list[ContainerInfo]:
        """Running containers that carry the auto-update label (any value)."""
        filters = json.dumps({"label": [AUTOUPDATE_LABEL], "status": ["running"]})
        response = await self._run("get", "/containers/json", params={"filters": filters})
        return [_container_from_list(item) for item in response.json()]

    async def stopped_labelled_containers(self) -> list[ContainerInfo]:
        """Labelled containers podman still has that are not running, outside pods (non-`--new` units)."""
        filters = json.dumps({"label": [AUTOUPDATE_LABEL]})
        response = await self._run("get", "/containers/json", params={"all": "true", "filters": filters})
        found = (_container_from_list(item) for item in response.json())
        return [c for c in found if c.state != "running" and not c.pod_id]

    async def pod_infra_labels(self, pod_id: str) -> dict[str, str]:
        """Labels of a pod's infra container (where the pod's unit name is recorded)."""
        pod = (await self._run("get", f"/pods/{pod_id}/json")).json()
        infra_id = pod.get("InfraContainerID") or ""
        if not infra_id:
            raise PodmanError(f"pod {pod.get('Name') or pod_id} has no infra container")
        infra = (await self._run("get", f"/containers/{infra_id}/json")).json()
        return dict((infra.get("Config") or {}).get("Labels") or {})

    async def images(self) -> dict[str, ImageInfo]:
        """Every local image by ID."""
        response = await self._run("get", "/images/json", params={"all": "true"})
        images = {}
        for item in response.json():
            info = _image_from_list(item)
            images[info.id] = info
        return images

    async def image(self, name_or_id: str) -> ImageInfo:
        """Inspect one image (full platform and healthcheck data)."""
        return _image_from_inspect((await self._run("get", f"/images/{name_or_id}/json")).json())

    async def image_id(self, name: str) -> str:
        """The ID a name resolves to in local storage now."""
        return str((await self._run("get", f"/images/{name}/json")).json()["Id"])

    async def tag(self, image_id: str, name: str) -> None:
        """Point `name` (repo:tag) at `image_id` again."""
        repo, tag = _split_tag(name)
        await self._run("post", f"/images/{image_id}/tag", params={"repo": repo, "tag": tag}, again=True)

    async def pull(self, reference: str, *, credentials: Credentials | None, tls_verify: bool | None) -> str:
        """Pull `reference` (always), returning the pulled image's ID."""
        self.secrets.add_credentials(credentials)
        return await asyncio.to_thread(self._pull, reference, credentials, tls_verify)

    def _pull(self, reference: str, credentials: Credentials | None, tls_verify: bool | None) -> str:
        params: dict[str, Any] = {"reference": reference, "policy": "always", "quiet": "true"}
        # Sending tlsVerify at all overrides registries.conf on the service side, so only
        # send it when the user chose.
        if tls_verify is not None:
            params["tlsVerify"] = "true" if tls_verify else "false"
        headers = {"X-Registry-Auth": encode_auth(credentials)} if credentials else {}
        response = self._call("post", "/images/pull", params=params, headers=headers, stream=True)
        image_id = ""
        for report in _json_stream(response.iter_lines()):
            if error := report.get("error"):
                raise PodmanError(self.secrets.scrub(str(error).strip()))
            if report.get("id"):
                image_id = str(report["id"])
            for value in report.get("images") or ():
                image_id = str(value)
        if not image_id:
            raise PodmanError(f"pulling {reference}: podman reported no image")
        return image_id

    async def container_state(self, name: str) -> ContainerState | None:
        """The state of the container named `name` now, or None when it does not exist (yet).

        podman resolves a path name as a name or else as an ID prefix, so while a unit has
        removed its container, "c142" could find another container whose ID starts with c142:
        only an exact name counts.
        """
        try:
            item = (await self._run("get", f"/containers/{name}/json")).json()
        except NoSuchObject:
            return None
        if str(item.get("Name") or "").lstrip("/") != name:
            return None
        state = item.get("State") or {}
        health = state.get("Health") or state.get("Healthcheck") or {}
        return ContainerState(
            id=str(item.get("Id") or ""),
            image_id=str(item.get("Image") or ""),
            status=str(state.get("Status") or ""),
            running=bool(state.get("Running")),
            exit_code=int(state.get("ExitCode") or 0),
            started_at=str(state.get("StartedAt") or ""),
            health=str(health.get("Status") or ""),
            has_healthcheck=bool(((item.get("Config") or {}).get("Healthcheck") or {}).get("Test")),
        )

    async def run_healthcheck(self, name_or_id: str) -> str:
        """Run the container's healthcheck now (podman's API does), returning its status."""
        response = await self._run("get", f"/containers/{name_or_id}/healthcheck")
        return str(response.json().get("Status") or "")

    async def prune_images(self) -> PruneReport:
        """Remove dangling images (what podman-auto-update.service does after a run)."""
        response = await self._run("post", "/images/prune", again=True)
        items = [item for item in (response.json() or []) if isinstance(item, dict) and not item.get("Err")]
        return PruneReport(
            deleted=tuple(str(item.get("Id", "")) for item in items),
            reclaimed=sum(int(item.get("Size") or 0) for item in items),
        )


def _root_cause(err: BaseException) -> str:
    """The innermost OS-level reason, without the layers of wrapping requests adds."""
    seen: BaseException | None = err
    best = str(err)
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            best = seen.strerror
        seen = seen.__cause__ or seen.__context__
    if "Unable to make connection to UDS" in best:
        return "no service is listening on that socket"
    if "Connection aborted" in best or "Remote end closed connection" in best:
        return "the service closed the connection (was it restarted or killed?)"
    return best


def _json_stream(lines: Iterator[bytes]) -> Iterator[Mapping[str, Any]]:
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _split_tag(name: str) -> tuple[str, str]:
    base = name.split("@", 1)[0]
    slash, colon = base.rfind("/"), base.rfind(":")
    if colon > slash:
        return base[:colon], base[colon + 1 :]
    return base, "latest"


def _container_from_list(item: Mapping[str, Any]) -> ContainerInfo:
    names = item.get("Names") or []
    return ContainerInfo(
        id=str(item["Id"]),
        name=str(names[0]).lstrip("/") if names else str(item["Id"])[:12],
        image_id=str(item.get("ImageID") or ""),
        raw_image_name=str(item.get("Image") or ""),
        labels=dict(item.get("Labels") or {}),
        pod_id=str(item.get("Pod") or ""),
        state=str(item.get("State") or ""),
    )


def _image_from_list(item: Mapping[str, Any]) -> ImageInfo:
    return ImageInfo(
        id=str(item["Id"]),
        digest=str(item.get("Digest") or ""),
        repo_digests=tuple(item.get("RepoDigests") or ()),
        names=tuple(item.get("Names") or item.get("RepoTags") or ()),
    )


def _image_from_inspect(item: Mapping[str, Any]) -> ImageInfo:
    config = item.get("Config") or {}
    health = item.get("HealthCheck") or config.get("Healthcheck") or {}
    test = health.get("Test") or []
    return ImageInfo(
        id=str(item["Id"]),
        digest=str(item.get("Digest") or ""),
        repo_digests=tuple(item.get("RepoDigests") or ()),
        names=tuple(item.get("RepoTags") or ()),
        platform=Platform(
            os=str(item.get("Os") or "linux"),
            architecture=str(item.get("Architecture") or "amd64"),
            variant=str(item.get("Variant") or "") or None,
        ),
        healthcheck=bool(test) and test != ["NONE"],
    )
