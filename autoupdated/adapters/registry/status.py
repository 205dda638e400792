"""A manifest answer's HTTP status as a RegistryError for users (pure, no IO).

The registry's own error detail (`CODE: message` from a distribution error body) is added to
the text: scrubbed of every known secret first, then cut to DETAIL_LIMIT characters, so a
secret an echoing registry sends back cannot survive in part across the cut.
"""

from __future__ import annotations

import json

from autoupdated.adapters.registry import retry
from autoupdated.adapters.registry.hosts import Ask
from autoupdated.adapters.registry.transport import MAX_ERROR_BODY, Response
from autoupdated.adapters.registry.urls import origin
from autoupdated.errors import (
    AccessDenied,
    AuthenticationRequired,
    ManifestUnknown,
    RegistryError,
    RegistryProtocolError,
    RegistryServerError,
    TooManyRequests,
)
from autoupdated.secrets import Secrets, clip

__all__ = ["DETAIL_LIMIT", "LOGIN_HINT", "check_status", "error_detail", "foreign_401", "login_hint"]

DETAIL_LIMIT = 300
LOGIN_HINT = "log in with `podman login {host}` or set an authfile (--authfile or the {label} label)"
AUTHFILE_LABEL = "io.containers.autoupdate.authfile"


def login_hint(domain: str) -> str:
    return LOGIN_HINT.format(host=domain, label=AUTHFILE_LABEL)


def error_detail(body: bytes, secrets: Secrets) -> str:
    """`CODE: message` from a distribution error body (scrubbed, then clipped), or ""."""
    try:
        doc = json.loads(body[:MAX_ERROR_BODY])
    except (ValueError, RecursionError):
        return ""
    if not isinstance(doc, dict):
        return ""
    text = ""
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        parts = [p for p in (errors[0].get("code"), errors[0].get("message")) if isinstance(p, str) and p]
        text = ": ".join(parts)
    else:
        for key in ("error", "message", "details"):
            value = doc.get(key)
            if isinstance(value, str) and value:
                text = value
                break
    return clip(secrets.scrub(text), DETAIL_LIMIT)


def foreign_401(ask: Ask, response: Response) -> RegistryProtocolError:
    """A redirect target (blob storage, a CDN) asked for authentication: never answered with the
    registry's credentials, and its challenge is not the registry's."""
    registry = "{}://{}:{}".format(*origin(response.asked))
    target = "{}://{}:{}".format(*origin(response.url))
    return RegistryProtocolError(
        f"registry {ask.state.host} redirected {ask.method} {ask.what} to {target}, which answered "
        f"401 Unauthorized; autoupdated sends credentials only to the registry ({registry}) and the token "
        "service it names, never to a redirect target; ask the registry's operator to fix the redirect "
        "(the storage it points to should accept the redirect URL as it is)",
        status=401,
    )


def check_status(response: Response, ask: Ask, secrets: Secrets) -> Response:
    """`response` when it is a 200; otherwise raises the RegistryError its status means."""
    if response.status == 200:
        return response
    raise status_error(response, ask, secrets)


def status_error(response: Response, ask: Ask, secrets: Secrets) -> RegistryError:
    ref, reference, credentials, what, status = ask.ref, ask.reference, ask.credentials, ask.what, response.status
    detail = error_detail(response.body, secrets)
    suffix = f" ({detail})" if detail else ""
    hint = login_hint(ref.domain)
    if status == 401:
        # podman's (containers/image's) text is "reading manifest TAG in NAME: authentication
        # required", for missing and refused credentials alike: ours starts the same way.
        if credentials is None:
            return AuthenticationRequired(
                f"reading {what}: authentication required; registry {ref.domain} needs credentials "
                f"and none were found{suffix}; {hint}",
                status=status,
            )
        who = credentials.username or "the identity token"
        return AuthenticationRequired(
            f"reading {what}: authentication required; registry {ref.domain} refused the credentials of "
            f"{who!r}{suffix}; {hint}",
            status=status,
        )
    if status == 403:
        return AccessDenied(
            f"access denied: registry {ref.domain} does not let "
            f"{'anonymous users' if credentials is None else repr(credentials.username)} read {what}"
            f"{suffix}; check the repository name and your permissions, or {hint}",
            status=status,
        )
    if status == 404:
        kind = "digest" if ":" in reference else "tag"
        return ManifestUnknown(
            # podman: "reading manifest TAG in NAME: manifest unknown"
            f"reading {what}: manifest unknown; registry {ref.domain} has no {kind} {reference!r} "
            f"in repository {ref.repository!r}{suffix}; check the image name and tag ({ref})",
            status=status,
        )
    if status == 429:
        asked = retry.retry_after(response.headers.get("Retry-After"))
        after = f"; retry after {asked:.0f} s" if asked is not None else "; try again later"
        return TooManyRequests(
            f"too many requests to {ref.domain} ({ask.method} {what}): the registry rate-limits us{after}",
            retry_after=asked,
        )
    host = ref.api_host
    if 500 <= status < 600:
        return RegistryServerError(
            f"registry {host} failed reading {what}: HTTP {status} {response.reason}{suffix}; "
            "this is a registry-side problem, try again later",
            status=status,
        )
    return RegistryServerError(
        f"registry {host} answered HTTP {status} {response.reason} reading {what}{suffix}", status=status
    )
