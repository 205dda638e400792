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
containers/image (so podman's pull) never runs it, and neither does this lookup; a file that
has one gets one warning (naming the file and the key, never the content).

Around all of that, registries.conf's `credential-helpers` list (tlsconfig.py) is tried in
order, as containers/image's `getCredentialsWithHomeDir` does: `containers-auth.json` stands for
the auth files above, any other name runs `docker-credential-<name> get`.  The first helper with
credentials wins; one that has none ("credentials not found") or fails moves on to the next;
when none had credentials and some failed, their errors are the lookup's error.

An explicit auth file that does not exist is no error here: containers/image reads it as empty,
so podman checks anonymously; so do we, with a warning naming the file (podman's CLI refuses a
missing `--authfile` before the run, and so does `autoupdated check`).

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

from autoupdated import aio
from autoupdated.adapters.registry.tlsconfig import AUTH_FILES_HELPER, TLSConfig, TLSConfigError
from autoupdated.errors import RegistryConfigError
from autoupdated.model import Credentials
from autoupdated.reference import Reference

__all__ = [
    "AuthFileError",
    "CredentialHelpers",
    "CredentialsLookup",
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

AUTHFILE_LABEL = "io.containers.autoupdate.authfile"
MAX_AUTH_FILE = 1024 * 1024  # auth files hold a few entries; a larger "file" is not one
DEFAULT_TIMEOUT = 5.0


class AuthFileError(RegistryConfigError):
    """An auth file that cannot be used.  The message names the file, never its content."""


@dataclass(frozen=True, slots=True)
class CredentialHelpers:
    """registries.conf's `credential-helpers`, in order, and the file that set them (for messages)."""

    names: tuple[str, ...] = (AUTH_FILES_HELPER,)
    source: str = "the default"

    @classmethod
    def configured(cls) -> CredentialHelpers:
        """As registries.conf and its drop-ins (the system's, then the user's) say."""
        try:
            tls = TLSConfig()
        except TLSConfigError as err:
            raise AuthFileError(f"{err} (needed for its credential-helpers)") from None
        return cls(tls.credential_helpers, tls.credential_helpers_source)


_warned: set[tuple[str, str]] = set()


def _warn_once(path: Path, what: str, text: str) -> None:
    """One warning per (file, problem) per process: a run looks files up once per image."""
    if (str(path), what) not in _warned:
        _warned.add((str(path), what))
        log.warning("%s", text)


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
    docker_config = os.environ.get("DOCKER_CONFIG")
    docker_dir = Path(docker_config) if docker_config else home_dir / ".docker"
    paths.append(_AuthPath(docker_dir / "config.json"))
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


def _warn_creds_store(text: str | bytes, path: Path) -> None:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return
    if isinstance(doc, dict) and "credsStore" in doc:
        _warn_once(
            path,
            "credsStore",
            (
                f'auth file {path}: "credsStore" is ignored, as podman (containers/image) ignores it; name the '
                f'helper per registry in "credHelpers" of that file, or list it in credential-helpers in '
                "registries.conf"
            ),
        )


def cred_helpers_in(text: str | bytes, *, source: str) -> dict[str, str]:
    """The `credHelpers` table of an auth file: {registry host: helper name}."""
    try:
        helpers = json.loads(text).get("credHelpers") or {}
    except (ValueError, RecursionError, AttributeError):
        return {}  # parse_auth_document reports a malformed file
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise AuthFileError(f'reading JSON file {source!r}: "credHelpers" is not an object of helper names')
    return {str(k): v for k, v in helpers.items()}


_NOT_FOUND = "credentials not found in native keychain"


def credentials_from_helper(helper: str, registry: str, *, source: str, key: str = "credHelpers") -> Credentials | None:
    """`docker-credential-HELPER get` for `registry`; None when it has no credentials for it.
    `key in source` says who named the helper (for messages)."""
    program = f"docker-credential-{helper}"
    where = f"credential helper {program} for {registry} ({key} in {source})"
    try:
        done = subprocess.run(
            [program, "get"], input=registry.encode(), capture_output=True, timeout=DEFAULT_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise AuthFileError(f"{where}: {program} is not on PATH") from None
    except (OSError, subprocess.TimeoutExpired) as err:
        raise AuthFileError(f"{where}: {type(err).__name__}") from None
    if done.returncode != 0:
        said = done.stdout.decode("utf-8", "replace").strip()
        if said == _NOT_FOUND:
            return None
        raise AuthFileError(f"{where}: exit status {done.returncode}")  # its output may hold secrets
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


def credentials_for(
    ref: Reference, authfile: str | None, *, home: Path | None = None, helpers: CredentialHelpers | None = None
) -> Credentials | None:
    """The credentials podman would use for `ref`, or None for anonymous access.

    `helpers` (registries.conf's credential-helpers; read from there when None) are tried in
    order.  `authfile` (the --authfile option or the container's authfile label) restricts the
    auth files to that file; `$REGISTRY_AUTH_FILE` does the same when `authfile` is None.
    Raises AuthFileError when no helper had credentials and some failed: a file of the chain
    is malformed, not a regular file or over MAX_AUTH_FILE, or a helper program failed.
    Blocking: on the event loop, use `load_credentials`.
    """
    helpers = helpers if helpers is not None else CredentialHelpers.configured()
    errors: list[str] = []
    for helper in helpers.names:
        try:
            if helper == AUTH_FILES_HELPER:
                found = _from_auth_files(ref, authfile, home)
            else:
                found = credentials_from_helper(helper, ref.domain, source=helpers.source, key="credential-helpers")
        except AuthFileError as err:
            log.debug("credential helper %s: %s", helper, err)
            errors.append(str(err))
            continue
        if found is not None:
            return found
    if len(errors) == 1:
        raise AuthFileError(errors[0])
    if errors:
        raise AuthFileError("errors looking up credentials: " + "; ".join(errors))
    return None


def _from_auth_files(ref: Reference, authfile: str | None, home: Path | None) -> Credentials | None:
    """containers/image's built-in helper `containers-auth.json`: the auth-file chain."""
    explicit = _explicit_authfile(authfile)
    for path, legacy in auth_file_chain(authfile, home=home):
        data = read_auth_file(path)
        if data is None:
            if explicit is not None:
                _warn_once(
                    path,
                    "missing",
                    (
                        f"auth file {path} does not exist (named by --authfile, REGISTRY_AUTH_FILE or the "
                        f"{AUTHFILE_LABEL} label): checking without its credentials, as podman does; "
                        "fix the path or create the file with `podman login --authfile`"
                    ),
                )
            continue
        entries = parse_auth_document(data, source=str(path), legacy=legacy)
        if not legacy:
            _warn_creds_store(data, path)
        helper = None if legacy else cred_helpers_in(data, source=str(path)).get(ref.domain)
        if helper is not None:
            found = credentials_from_helper(helper, ref.domain, source=str(path))
            if found is None:
                continue  # containers/image: a credHelpers entry decides for its file
        else:
            found = lookup_in_document(entries, ref, source=str(path), legacy=legacy)
        if found is not None:
            log.debug("using credentials for %s from %s", ref.name, path)
            return found
    return None


class CredentialsLookup:
    """`credentials_for` as one run asks it (the engine's `credentials_for` port).

    A run asks once per container; sixty containers over twenty images asked sixty times, each
    time parsing registries.conf for its credential-helpers and reading the auth files, in
    worker threads that then fought for the interpreter: 0.2 s of a dry run that needs 0.6.
    Here registries.conf's helpers are read once per run, and each (repository, authfile) is
    looked up once; concurrent callers share the lookup, its answer and its error.  A new run
    (the daemon builds one per run) reads the files afresh, so an edited auth.json counts at
    the next run.
    """

    def __init__(self, *, home: Path | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._home = home
        self._timeout = timeout
        self._helpers: dict[None, asyncio.Future[CredentialHelpers]] = {}  # one entry: read once per run
        self._found: dict[tuple[str, str | None], asyncio.Future[Credentials | None]] = {}

    async def __call__(self, ref: Reference, authfile: str | None) -> Credentials | None:
        return await asyncio.shield(aio.shared(self._found, (ref.name, authfile), lambda: self._lookup(ref, authfile)))

    async def _lookup(self, ref: Reference, authfile: str | None) -> Credentials | None:
        helpers = await asyncio.shield(aio.shared(self._helpers, None, self._read_helpers))
        return await load_credentials(ref, authfile, home=self._home, timeout=self._timeout, helpers=helpers)

    async def _read_helpers(self) -> CredentialHelpers:
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.to_thread(CredentialHelpers.configured)
        except TimeoutError:
            raise AuthFileError(
                f"reading registries.conf for its credential-helpers: no answer within {self._timeout:g} s "
                "(a hung network file system?); put it on a local file system"
            ) from None


async def load_credentials(
    ref: Reference,
    authfile: str | None,
    *,
    home: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - ours, so that the error names the file
    helpers: CredentialHelpers | None = None,
) -> Credentials | None:
    """`credentials_for`, read in a worker thread so a slow file system never stalls the loop.

    Raises AuthFileError when the files do not answer within `timeout` seconds (the thread is
    left to finish on its own: a read cannot be cancelled).
    """
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.to_thread(credentials_for, ref, authfile, home=home, helpers=helpers)
    except TimeoutError:
        paths = ", ".join(str(path) for path, _ in auth_file_chain(authfile, home=home))
        raise AuthFileError(
            f"reading auth file {paths}: no answer within {timeout:g} s (a hung network file system?); "
            "put the auth file on a local file system"
        ) from None
