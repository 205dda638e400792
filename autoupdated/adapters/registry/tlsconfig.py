"""TLS and insecure-registry settings, as containers/image reads them.

* `registries.conf` (the main file, `$CONTAINERS_REGISTRIES_CONF` if set, plus every
  `registries.conf.d/*.conf` drop-in in name order): v2 `[[registry]]` tables with
  `location`, `prefix`, `insecure`, `blocked`, `mirror-by-digest-only` and
  `[[registry.mirror]]` (`location`, `insecure`, `pull-from-mirror`); or v1 `[registries.insecure]` /
  `[registries.block]` lists.  A drop-in's entry replaces an earlier one with the same
  prefix.  The longest matching prefix wins (`*.example.com` wildcards supported).
  `pull_sources` is containers/image's PullSourcesFromReference: the mirrors a pull tries in
  order, then the primary location with the prefix rewritten; the digest check asks the same
  sources in the same order, so it compares what a pull would fetch.
* `credential-helpers = [...]` (top level, containers/image's `sysregistriesv2.CredentialHelpers`):
  the helpers tried in order for credentials; a later file's non-empty list replaces an earlier
  one; `["containers-auth.json"]` (the auth files) when no file sets one.
* certs.d (`/etc/containers/certs.d/<host[:port]>/`, then `/etc/docker/certs.d/...`):
  `*.crt` are extra CAs (added to the system ones), `*.cert` + `*.key` a client pair.

`tls_verify` (the --tls-verify option): None lets registries.conf decide; False treats every
registry as insecure; True always verifies and never uses plain HTTP.

Parsing (`parse_registries_conf`, `find_registry`) is pure; `TLSConfig` reads the files.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AUTH_FILES_HELPER",
    "DEFAULT_CERTS_DIRS",
    "DEFAULT_REGISTRIES_CONF",
    "DEFAULT_REGISTRIES_CONF_DIR",
    "Mirror",
    "RegistriesConfError",
    "RegistryEntry",
    "TLSConfig",
    "TLSConfigError",
    "TLSSettings",
    "find_registry",
    "parse_credential_helpers",
    "parse_registries_conf",
    "pull_sources",
]

DEFAULT_REGISTRIES_CONF = Path("/etc/containers/registries.conf")
DEFAULT_REGISTRIES_CONF_DIR = Path("/etc/containers/registries.conf.d")
DEFAULT_CERTS_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))
# The reserved helper name for the auth files (containers-auth.json(5)), and the default list.
AUTH_FILES_HELPER = "containers-auth.json"


class TLSConfigError(Exception):
    """Configuration that cannot be used (bad certs.d content, unreadable files)."""


class RegistriesConfError(TLSConfigError):
    """A registries.conf that cannot be parsed; the message names the file."""


@dataclass(frozen=True, slots=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"  # "all", "digest-only" or "tag-only"


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()
    mirror_by_digest_only: bool = False


_PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")


def _mirrors(table: dict[str, object], *, source: str) -> tuple[Mirror, ...]:
    raw = table.get("mirror", [])
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise RegistriesConfError(f"{source}: [[registry.mirror]] must be an array of tables")
    mirrors = []
    for item in raw:
        location = item.get("location", "")
        if not isinstance(location, str) or not location:
            raise RegistriesConfError(f"{source}: a [[registry.mirror]] needs a location")
        mode = item.get("pull-from-mirror", "") or "all"
        if mode not in _PULL_FROM_MIRROR:
            raise RegistriesConfError(
                f"{source}: unsupported pull-from-mirror value {mode!r}; use one of {', '.join(_PULL_FROM_MIRROR)}"
            )
        mirrors.append(
            Mirror(
                _validate_location(location, source=source, what="mirror location"),
                _bool(item, "insecure", source=source),
                str(mode),
            )
        )
    return tuple(mirrors)


def _validate_location(value: str, *, source: str, what: str) -> str:
    if "://" in value:
        raise RegistriesConfError(f"{source}: invalid {what} {value!r}: URI schemes are not supported")
    return value.rstrip("/")


def _bool(table: dict[str, object], key: str, *, source: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise RegistriesConfError(f"{source}: {key!r} must be true or false")
    return value


def _string_list(table: object, key: str, *, source: str) -> list[str]:
    if table is None:
        return []
    if not isinstance(table, dict):
        raise RegistriesConfError(f"{source}: [registries.{key}] must be a table")
    values = table.get("registries", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RegistriesConfError(f"{source}: [registries.{key}] registries must be a list of strings")
    return [v for v in values if isinstance(v, str)]


def parse_registries_conf(text: str, *, source: str = "registries.conf") -> list[RegistryEntry]:
    """Parse one registries.conf (v1 or v2) into entries.  Raises RegistriesConfError."""
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as err:
        raise RegistriesConfError(f"loading registries configuration {source!r}: {err}") from None
    entries: list[RegistryEntry] = []
    raw_v2 = doc.get("registry", [])
    if not isinstance(raw_v2, list):
        raise RegistriesConfError(f"{source}: [[registry]] must be an array of tables")
    for table in raw_v2:
        if not isinstance(table, dict):
            raise RegistriesConfError(f"{source}: [[registry]] must be an array of tables")
        location = table.get("location", "")
        prefix = table.get("prefix", "")
        if not isinstance(location, str) or not isinstance(prefix, str):
            raise RegistriesConfError(f"{source}: location and prefix must be strings")
        location = _validate_location(location, source=source, what="location")
        prefix = _validate_location(prefix, source=source, what="prefix") if prefix else location
        if not prefix:
            raise RegistriesConfError(f"{source}: a [[registry]] needs a location or a prefix")
        if prefix.startswith("*.") and not prefix[2:]:
            raise RegistriesConfError(f"{source}: invalid prefix {prefix!r}")
        entries.append(
            RegistryEntry(
                prefix=prefix,
                location=location,
                insecure=_bool(table, "insecure", source=source),
                blocked=_bool(table, "blocked", source=source),
                mirrors=_mirrors(table, source=source),
                mirror_by_digest_only=_bool(table, "mirror-by-digest-only", source=source),
            )
        )
    v1 = doc.get("registries")
    if v1 is not None:
        if not isinstance(v1, dict):
            raise RegistriesConfError(f"{source}: [registries] must be a table")
        insecure = _string_list(v1.get("insecure"), "insecure", source=source)
        blocked = _string_list(v1.get("block"), "block", source=source)
        search = _string_list(v1.get("search"), "search", source=source)
        if (insecure or blocked or search) and entries:
            raise RegistriesConfError(f"{source}: mixing sysregistry v1/v2 is not supported")
        merged: dict[str, RegistryEntry] = {}
        for name in insecure:
            location = _validate_location(name, source=source, what="registry")
            merged[location] = RegistryEntry(location, location, insecure=True)
        for name in blocked:
            location = _validate_location(name, source=source, what="registry")
            old = merged.get(location, RegistryEntry(location, location))
            merged[location] = RegistryEntry(location, location, insecure=old.insecure, blocked=True)
        entries.extend(merged.values())
    return entries


def parse_credential_helpers(text: str, *, source: str = "registries.conf") -> tuple[str, ...]:
    """The `credential-helpers` list of one registries.conf; () when it sets none (an empty list
    sets none either: containers/image then keeps the earlier files' list).  Raises
    RegistriesConfError."""
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as err:
        raise RegistriesConfError(f"loading registries configuration {source!r}: {err}") from None
    helpers = doc.get("credential-helpers", [])
    if not isinstance(helpers, list) or not all(isinstance(h, str) and h for h in helpers):
        raise RegistriesConfError(
            f"{source}: credential-helpers must be a list of helper names "
            f'(e.g. ["{AUTH_FILES_HELPER}", "pass"]: docker-credential-pass)'
        )
    return tuple(helpers)


def _match_length(ref: str, prefix: str) -> int:
    """containers/image refMatchingPrefix: the matched length, or -1."""
    if prefix.startswith("*."):
        host = ref.split("/", 1)[0].split(":", 1)[0]
        suffix = prefix[1:]  # ".example.com"
        if host.endswith(suffix) and len(host) > len(suffix):
            return len(prefix)
        return -1
    if len(ref) < len(prefix):
        return -1
    if len(ref) == len(prefix):
        return len(prefix) if ref == prefix else -1
    if not ref.startswith(prefix):
        return -1
    return len(prefix) if ref[len(prefix)] in ":/@" else -1


def find_registry(entries: Sequence[RegistryEntry], reference: str) -> RegistryEntry | None:
    """The entry whose prefix matches `reference` (host[/path]) longest, or None."""
    best: RegistryEntry | None = None
    best_length = -1
    for entry in entries:
        length = _match_length(reference, entry.prefix)
        if length > best_length:
            best, best_length = entry, length
    return best


def _rewrite(name: str, prefix: str, location: str) -> str:
    if prefix.startswith("*.") or not location:
        return name  # a wildcard entry has no location: the name stays
    return location + name[len(prefix) :]


def pull_sources(entries: Sequence[RegistryEntry], name: str, *, by_digest: bool) -> list[str]:
    """The repositories (host/path) a pull of `name` tries, in order: the entry's mirrors that
    serve this kind of reference, then its location (`name` itself without an entry)."""
    entry = find_registry(entries, name)
    if entry is None:
        return [name]
    sources = []
    if by_digest or not entry.mirror_by_digest_only:
        for mirror in entry.mirrors:
            if (mirror.pull_from_mirror == "digest-only" and not by_digest) or (
                mirror.pull_from_mirror == "tag-only" and by_digest
            ):
                continue
            sources.append(_rewrite(name, entry.prefix, mirror.location))
    sources.append(_rewrite(name, entry.prefix, entry.location))
    return list(dict.fromkeys(sources))


def _merge(base: list[RegistryEntry], updates: list[RegistryEntry]) -> list[RegistryEntry]:
    by_prefix = {entry.prefix: entry for entry in base}
    for entry in updates:
        by_prefix[entry.prefix] = entry
    return list(by_prefix.values())


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """How to talk to one registry host."""

    verify: bool = True
    allow_http: bool = False  # insecure: plain HTTP is tried when HTTPS fails
    ca_files: tuple[str, ...] = ()
    client_cert: tuple[str, str] | None = None  # (cert, key)
    cert_dir: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The context for this host, shared by every host (and, in the daemon, every run) with
        the same settings while the certificate files it read are unchanged: loading the
        system's CA bundle costs 20-90 ms each time, more than a HEAD to a near registry."""
        key = (self, _files_stamp(self._files()))
        context = _CONTEXTS.get(key)
        if context is None:
            context = self._new_context()
            if len(_CONTEXTS) >= _MAX_CONTEXTS:
                _CONTEXTS.pop(next(iter(_CONTEXTS)))
            _CONTEXTS[key] = context
        return context

    def _files(self) -> tuple[str, ...]:
        files = [*self.ca_files, *(self.client_cert or ())]
        if self.verify:
            files.append(_system_ca_file())
        return tuple(files)

    def _new_context(self) -> ssl.SSLContext:
        if self.verify:
            context = ssl.create_default_context()
        else:
            # Nothing is verified, so the system's CAs need not be loaded (podman's insecure
            # registries, --tls-verify=false): HTTPS is only tried, then plain HTTP.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if self.verify:
                for ca_file in self.ca_files:
                    context.load_verify_locations(cafile=ca_file)
            if self.client_cert is not None:
                context.load_cert_chain(self.client_cert[0], self.client_cert[1])
        except (ssl.SSLError, OSError) as err:
            raise TLSConfigError(
                f"loading certificates from {self.cert_dir or 'certs.d'}: {getattr(err, 'strerror', None) or err}"
            ) from None
        return context


# Contexts by (settings, the stat of every file they read): a changed certs.d file or system
# bundle makes a new one.  Few distinct settings exist on a host; the bound only guards memory.
_CONTEXTS: dict[tuple[TLSSettings, tuple[tuple[str, int, int] | None, ...]], ssl.SSLContext] = {}
_MAX_CONTEXTS = 32


def _system_ca_file() -> str:
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile


def _files_stamp(files: Sequence[str]) -> tuple[tuple[str, int, int] | None, ...]:
    stamps: list[tuple[str, int, int] | None] = []
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            stamps.append(None)  # loading it will say what is wrong
            continue
        stamps.append((name, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class TLSConfig:
    """Reads registries.conf and certs.d once; answers per registry.

    Every path is overridable so tests (and unusual hosts) need not touch /etc.
    `registries_conf_dirs` defaults to `/etc/containers/registries.conf.d` plus
    `~/.config/containers/registries.conf.d`.
    """

    def __init__(
        self,
        *,
        tls_verify: bool | None = None,
        registries_conf: str | Path | None = None,
        registries_conf_dirs: Sequence[str | Path] | None = None,
        certs_dirs: Sequence[str | Path] | None = None,
    ) -> None:
        self.tls_verify = tls_verify
        home = Path(os.environ.get("HOME") or Path.home())
        explicit_conf = registries_conf is not None or bool(os.environ.get("CONTAINERS_REGISTRIES_CONF"))
        if registries_conf is None:
            env = os.environ.get("CONTAINERS_REGISTRIES_CONF")
            user_conf = home / ".config" / "containers" / "registries.conf"
            registries_conf = env or (user_conf if user_conf.is_file() else DEFAULT_REGISTRIES_CONF)
        self.registries_conf = Path(registries_conf)
        if registries_conf_dirs is None:
            registries_conf_dirs = [
                DEFAULT_REGISTRIES_CONF_DIR,
                home / ".config" / "containers" / "registries.conf.d",
            ]
        self.registries_conf_dirs = [Path(d) for d in registries_conf_dirs]
        self.certs_dirs = [Path(d) for d in (certs_dirs if certs_dirs is not None else DEFAULT_CERTS_DIRS)]
        # containers/image's default when no file names any helper: the auth files only.
        self.credential_helpers: tuple[str, ...] = (AUTH_FILES_HELPER,)
        self.credential_helpers_source = "the default"
        self.entries = self._load(explicit_conf)
        self._settings_cache: dict[tuple[bool, str], TLSSettings] = {}

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or type(err).__name__
            raise RegistriesConfError(f"loading registries configuration {str(path)!r}: {reason}") from None

    def _load(self, explicit: bool) -> list[RegistryEntry]:
        entries: list[RegistryEntry] = []
        text = self._read(self.registries_conf)
        if text is None and explicit and self.registries_conf != DEFAULT_REGISTRIES_CONF:
            raise RegistriesConfError(
                f"loading registries configuration {str(self.registries_conf)!r}: no such file or directory"
            )
        if text is not None:
            entries = parse_registries_conf(text, source=str(self.registries_conf))
            self._note_helpers(text, self.registries_conf)
        for directory in self.registries_conf_dirs:
            try:
                drop_ins = sorted(p for p in directory.iterdir() if p.suffix == ".conf" and p.is_file())
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as err:
                raise RegistriesConfError(f"reading {directory}: {err.strerror}") from None
            for path in drop_ins:
                drop_in = self._read(path)
                if drop_in is not None:
                    entries = _merge(entries, parse_registries_conf(drop_in, source=str(path)))
                    self._note_helpers(drop_in, path)
        return entries

    def _note_helpers(self, text: str, path: Path) -> None:
        helpers = parse_credential_helpers(text, source=str(path))
        if helpers:  # a later file's list replaces the earlier one (containers/image updateWith)
            self.credential_helpers, self.credential_helpers_source = helpers, str(path)

    def registry_entry(self, reference: str) -> RegistryEntry | None:
        """The registries.conf entry for `reference` (host, host/repo or a full reference)."""
        return find_registry(self.entries, reference)

    def is_insecure(self, reference: str) -> bool:
        """Whether HTTPS without verification and then plain HTTP may be used for `reference`:
        its own entry says so, or it is (under) a location or mirror declared insecure."""
        if self.tls_verify is not None:
            return not self.tls_verify
        entry = self.registry_entry(reference)
        if entry and entry.insecure:
            return True
        return any(
            _match_length(reference, location) >= 0
            for e in self.entries
            for location, insecure in ((e.location, e.insecure), *((m.location, m.insecure) for m in e.mirrors))
            if insecure and location and not location.startswith("*.")
        )

    def pull_sources(self, name: str, *, by_digest: bool) -> list[str]:
        """See `pull_sources`: where a pull of `name` (host/path) looks, in order."""
        return pull_sources(self.entries, name, by_digest=by_digest)

    def is_blocked(self, reference: str) -> bool:
        entry = self.registry_entry(reference)
        return bool(entry and entry.blocked)

    def tls_verify_for(self, reference: str) -> bool | None:
        """What to pass as podman's `tlsVerify` when pulling `reference`.

        The --tls-verify option when given; False when registries.conf (as this process
        reads it) marks the registry insecure; otherwise None (podman decides, and uses
        certs.d itself).
        """
        if self.tls_verify is not None:
            return self.tls_verify
        return False if self.is_insecure(reference) else None

    def cert_dir(self, host: str) -> Path | None:
        for base in self.certs_dirs:
            candidate = base / host
            if candidate.is_dir():
                return candidate
        return None

    def settings_for(self, reference: str, host: str) -> TLSSettings:
        """TLS settings for requests to `host` (host[:port]) on behalf of `reference`."""
        insecure = self.is_insecure(reference)
        cached = self._settings_cache.get((insecure, host))
        if cached is not None:
            return cached
        settings = self._read_settings(insecure, host)
        self._settings_cache[(insecure, host)] = settings
        return settings

    def _read_settings(self, insecure: bool, host: str) -> TLSSettings:
        cert_dir = self.cert_dir(host)
        ca_files: list[str] = []
        client_cert: tuple[str, str] | None = None
        if cert_dir is not None:
            try:
                names = sorted(p.name for p in cert_dir.iterdir())
            except OSError as err:
                raise TLSConfigError(f"reading certificates directory {cert_dir}: {err.strerror}") from None
            for name in names:
                path = cert_dir / name
                if name.endswith(".crt"):
                    ca_files.append(str(path))
                elif name.endswith(".cert"):
                    key = name[: -len(".cert")] + ".key"
                    if key not in names:
                        raise TLSConfigError(f"missing key {key} for client certificate {path}")
                    if client_cert is None:
                        client_cert = (str(path), str(cert_dir / key))
                elif name.endswith(".key"):
                    cert = name[: -len(".key")] + ".cert"
                    if cert not in names:
                        raise TLSConfigError(
                            f"missing client certificate {cert} for key {path}. "
                            "Note that CA certificates should use the extension .crt"
                        )
        return TLSSettings(
            verify=not insecure,
            allow_http=insecure,
            ca_files=tuple(ca_files),
            client_cert=client_cert,
            cert_dir=str(cert_dir) if cert_dir is not None else None,
        )
