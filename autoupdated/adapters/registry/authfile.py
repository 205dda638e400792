"""Registry credentials from the containers auth files, as containers/image looks them up.

Lookup order (containers/image pkg/docker/config, as podman uses it):

1. an explicit auth file (`--authfile`, the `io.containers.autoupdate.authfile` label, or
   `$REGISTRY_AUTH_FILE`, which podman turns into the default `--authfile`): only that file,
   and it must exist and parse;
2. otherwise `$XDG_RUNTIME_DIR/containers/auth.json` (or `/run/containers/<uid>/auth.json`
   when XDG_RUNTIME_DIR is unset), `$XDG_CONFIG_HOME/containers/auth.json`
   (`~/.config/containers/auth.json`), `~/.docker/config.json`, `~/.dockercfg` (legacy).
   Missing files are skipped.

Within a file the most specific key wins: `host/ns/repo`, then `host/ns`, then `host`, then
legacy URL keys like `https://host/v1/`.  Before any of them, a `credHelpers` entry for the
registry's host runs `docker-credential-<name> get` (the host on stdin, JSON with `Username` and
`Secret` on stdout; `<token>` as the user name means an identity token); "credentials not
found" moves on to the next file, as containers/image does.  `credsStore` is docker's alone:
containers/image (so podman's pull) never runs it, and neither does this lookup.

Only regular files up to 1 MiB are read (a label naming /dev/zero or a FIFO is an error, not a
hang); `load_credentials` reads them off the event loop, with a timeout.

Error texts name the file but never include its content.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from autoupdated.errors import RegistryConfigError
from autoupdated.model import Credentials
from autoupdated.reference import Reference

__all__ = [
    "AuthFileError",
    "auth_file_chain",
    "cred_helpers_in",
    "credentials_for",
    "credentials_from_helper",
    "load_credentials",
    "lookup_in_document",
    "parse_auth_document",
    "read_auth_file",
]

log = logging.getLogger(__name__)

MAX_AUTH_FILE = 1024 * 1024  # auth files hold a few entries; a larger "file" is not one
DEFAULT_TIMEOUT = 5.0


class AuthFileError(RegistryConfigError):
    """An auth file that cannot be used.  The message names the file, never its content."""


@dataclass(frozen=True, slots=True)
class _AuthPath:
    path: Path
    legacy: bool = False


def _explicit_authfile(authfile: str | None) -> str | None:
    if authfile:
        return authfile
    return os.environ.get("REGISTRY_AUTH_FILE") or None


def auth_file_chain(authfile: str | None = None, *, home: Path | None = None) -> list[tuple[Path, bool]]:
    """The files to try, in order, as (path, legacy_format) pairs."""
    explicit = _explicit_authfile(authfile)
    if explicit is not None:
        return [(Path(explicit), False)]
    paths: list[_AuthPath] = []
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        if Path(runtime_dir).is_dir():
            paths.append(_AuthPath(Path(runtime_dir) / "containers" / "auth.json"))
    else:
        paths.append(_AuthPath(Path(f"/run/containers/{os.getuid()}/auth.json")))
    home_dir = home if home is not None else Path(os.environ.get("HOME") or Path.home())
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(home_dir / ".config")
    paths.append(_AuthPath(Path(config_home) / "containers" / "auth.json"))
    paths.append(_AuthPath(home_dir / ".docker" / "config.json"))
    paths.append(_AuthPath(home_dir / ".dockercfg", legacy=True))
    return [(entry.path, entry.legacy) for entry in paths]


def parse_auth_document(text: str | bytes, *, source: str, legacy: bool = False) -> dict[str, dict[str, str]]:
    """Parse an auth file's content into {key: {"auth": ..., "identitytoken": ...}}.

    Raises AuthFileError naming `source` (never quoting the content) when it is malformed.
    """
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as err:
        where = ""
        if isinstance(err, json.JSONDecodeError):
            where = f" at line {err.lineno} column {err.colno}"
        raise AuthFileError(f"reading JSON file {source!r}: invalid JSON{where}") from None
    if not isinstance(doc, dict):
        raise AuthFileError(f"reading JSON file {source!r}: the top level is not a JSON object")
    if legacy:
        entries: object = doc
    else:
        entries = doc.get("auths", {})
        if entries is None:
            entries = {}
    if not isinstance(entries, dict):
        raise AuthFileError(f'reading JSON file {source!r}: "auths" is not a JSON object')
    result: dict[str, dict[str, str]] = {}
    for key, value in entries.items():
        if not isinstance(value, dict):
            raise AuthFileError(f"reading JSON file {source!r}: the entry for {key!r} is not a JSON object")
        entry: dict[str, str] = {}
        for field_name in ("auth", "identitytoken"):
            field_value = value.get(field_name)
            if field_value is None:
                continue
            if not isinstance(field_value, str):
                raise AuthFileError(f"reading JSON file {source!r}: field {field_name!r} of {key!r} is not a string")
            entry[field_name] = field_value
        result[key] = entry
    return result


def _normalize_registry(host: str) -> str:
    if host in ("registry-1.docker.io", "docker.io", "index.docker.io"):
        return "docker.io"
    return host


def _normalize_key(key: str, legacy: bool) -> str:
    stripped = key.removeprefix("http://").removeprefix("https://")
    if legacy or stripped != key:
        stripped = stripped.split("/", 1)[0]
    return _normalize_registry(stripped)


def _keys_for(ref: Reference) -> list[str]:
    """`host/ns/repo`, `host/ns`, `host`: most specific first (containers/image authKeysForRef)."""
    name = ref.name
    keys = [name]
    while "/" in name:
        name = name.rsplit("/", 1)[0]
        keys.append(name)
    return keys


def _decode(entry: Mapping[str, str], key: str, source: str) -> Credentials | None:
    auth = entry.get("auth", "")
    identity_token = entry.get("identitytoken", "")
    if not auth:
        if identity_token:
            return Credentials(username="", password="", identity_token=identity_token)
        log.debug("empty credential entry %r in %s (a credential helper marker?), moving on", key, source)
        return None
    try:
        decoded = base64.b64decode(auth, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthFileError(f'reading JSON file {source!r}: the "auth" field of {key!r} is not valid base64') from None
    user, sep, password = decoded.partition(":")
    if not sep:
        # containers/image skips such entries with a warning (and never prints the text)
        log.warning('error parsing the "auth" field of a credential entry %r in %s, missing colon', key, source)
        return None
    return Credentials(username=user, password=password.strip("\x00"), identity_token=identity_token)


def lookup_in_document(
    entries: Mapping[str, Mapping[str, str]], ref: Reference, *, source: str, legacy: bool = False
) -> Credentials | None:
    """Find the credentials for `ref` in one parsed auth document (most specific key first)."""
    if not legacy:
        for key in _keys_for(ref):
            if key in entries:
                return _decode(entries[key], key, source)
    registry = _normalize_registry(ref.domain)
    for key in sorted(entries):  # sorted: deterministic when several legacy keys normalize alike
        if _normalize_key(key, legacy) == registry:
            return _decode(entries[key], key, source)
    return None


def cred_helpers_in(text: str | bytes, *, source: str) -> dict[str, str]:
    """The `credHelpers` table of an auth file: {registry host: helper name}."""
    try:
        helpers = json.loads(text).get("credHelpers") or {}
    except (ValueError, RecursionError, AttributeError):
        return {}   # parse_auth_document reports a malformed file
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise AuthFileError(f'reading JSON file {source!r}: "credHelpers" is not an object of helper names')
    return {str(k): v for k, v in helpers.items()}


_NOT_FOUND = "credentials not found in native keychain"


def credentials_from_helper(helper: str, registry: str, *, source: str) -> Credentials | None:
    """`docker-credential-HELPER get` for `registry`; None when it has no credentials for it."""
    program = f"docker-credential-{helper}"
    where = f"credential helper {program} for {registry} (credHelpers in {source})"
    try:
        done = subprocess.run([program, "get"], input=registry.encode(), capture_output=True,
                              timeout=DEFAULT_TIMEOUT, check=False)
    except FileNotFoundError:
        raise AuthFileError(f"{where}: {program} is not on PATH") from None
    except (OSError, subprocess.TimeoutExpired) as err:
        raise AuthFileError(f"{where}: {type(err).__name__}") from None
    if done.returncode != 0:
        said = done.stdout.decode("utf-8", "replace").strip()
        if said == _NOT_FOUND:
            return None
        raise AuthFileError(f"{where}: exit status {done.returncode}")   # its output may hold secrets
    try:
        answer = json.loads(done.stdout)
        user, secret = answer.get("Username", ""), answer.get("Secret", "")
    except (ValueError, AttributeError):
        raise AuthFileError(f"{where}: its answer is not a JSON object") from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise AuthFileError(f"{where}: Username and Secret must be strings")
    if user == "<token>":
        return Credentials(identity_token=secret) if secret else None
    return Credentials(username=user, password=secret) if user and secret else None


def read_auth_file(path: Path) -> bytes | None:
    """The bytes of a regular auth file, None when it does not exist.

    Opened with O_NONBLOCK and checked with fstat before anything is read: a label may name
    /dev/zero (which never ends) or a FIFO (which blocks until a writer comes); neither is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise AuthFileError(f"reading auth file {path}: permission denied") from None
    except OSError as err:
        raise AuthFileError(f"reading auth file {path}: {err.strerror or type(err).__name__}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise AuthFileError(f"reading auth file {path}: is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise AuthFileError(
                f"reading auth file {path}: is a {_kind(mode)}, not a regular file; point the authfile "
                "at the JSON file `podman login --authfile` writes"
            )
        data = _read_bounded(fd)
    except OSError as err:
        raise AuthFileError(f"reading auth file {path}: {err.strerror or type(err).__name__}") from None
    finally:
        os.close(fd)
    if data is None:
        raise AuthFileError(
            f"reading auth file {path}: larger than {MAX_AUTH_FILE // 1024} KiB, which no auth file is; "
            "point the authfile at the JSON file `podman login --authfile` writes"
        )
    return data


def _read_bounded(fd: int) -> bytes | None:
    """Up to MAX_AUTH_FILE bytes; None when there are more (the size in fstat may lie, e.g. /proc)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, 64 * 1024)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > MAX_AUTH_FILE:
            return None
        chunks.append(chunk)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def credentials_for(ref: Reference, authfile: str | None, *, home: Path | None = None) -> Credentials | None:
    """The credentials podman would use for `ref`, or None for anonymous access.

    `authfile` (the --authfile option or the container's authfile label) restricts the lookup
    to that file; `$REGISTRY_AUTH_FILE` does the same when `authfile` is None.  Raises
    AuthFileError when that explicit file is missing or malformed, or when a file of the
    default chain exists but is malformed, not a regular file or over MAX_AUTH_FILE.
    Blocking: on the event loop, use `load_credentials`.
    """
    explicit = _explicit_authfile(authfile)
    for path, legacy in auth_file_chain(authfile, home=home):
        data = read_auth_file(path)
        if data is None:
            if explicit is not None:
                raise AuthFileError(f"checking authfile: stat {path}: no such file or directory")
            continue
        entries = parse_auth_document(data, source=str(path), legacy=legacy)
        helper = None if legacy else cred_helpers_in(data, source=str(path)).get(ref.domain)
        if helper is not None:
            found = credentials_from_helper(helper, ref.domain, source=str(path))
        else:
            found = lookup_in_document(entries, ref, source=str(path), legacy=legacy)
        if found is not None:
            log.debug("using credentials for %s from %s", ref.name, path)
            return found
    return None


async def load_credentials(
    ref: Reference,
    authfile: str | None,
    *,
    home: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - ours, so that the error names the file
) -> Credentials | None:
    """`credentials_for`, read in a worker thread so a slow file system never stalls the loop.

    Raises AuthFileError when the files do not answer within `timeout` seconds (the thread is
    left to finish on its own: a read cannot be cancelled).
    """
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.to_thread(credentials_for, ref, authfile, home=home)
    except TimeoutError:
        paths = ", ".join(str(path) for path, _ in auth_file_chain(authfile, home=home))
        raise AuthFileError(
            f"reading auth file {paths}: no answer within {timeout:g} s (a hung network file system?); "
            "put the auth file on a local file system"
        ) from None
