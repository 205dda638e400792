"""Manifest media types, digests, index parsing and platform selection.

Pure: no IO.  Follows containers/image: `WantedPlatforms` (variant fallbacks for arm and
arm64) and `ChooseInstance` for OCI indexes (best platform match, then zstd instances, then
position; entries without a platform match last) and Docker manifest lists (first match in
wanted-platform order).  Malformed input raises `ManifestError` (a `ValueError`), never
another exception.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from autoupdated.model import Platform

__all__ = [
    "ACCEPT",
    "DOCKER_V2_LIST",
    "DOCKER_V2_SCHEMA1",
    "DOCKER_V2_SCHEMA1_SIGNED",
    "DOCKER_V2_SCHEMA2",
    "INDEX_TYPES",
    "MAX_MANIFEST_SIZE",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageManifest",
    "Index",
    "ManifestError",
    "choose_instance",
    "compute_digest",
    "is_index_type",
    "normalize_media_type",
    "parse",
    "validate_digest",
    "wanted_platforms",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_V2_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V2_SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_V2_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_V2_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

#: The Accept header of every manifest request: indexes first, then single-image manifests.
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_V2_LIST, DOCKER_V2_SCHEMA2))

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_V2_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_V2_SCHEMA2, DOCKER_V2_SCHEMA1, DOCKER_V2_SCHEMA1_SIGNED})
KNOWN_TYPES = INDEX_TYPES | IMAGE_TYPES

#: containers/image refuses manifests larger than this (4 MiB).
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

_ZSTD_ANNOTATION = "io.github.containers.compression.zstd"

# containers/image internal/pkg/platform: known variants, most capable first.
_COMPATIBILITY: dict[str, tuple[str, ...]] = {
    "arm": ("v8", "v7", "v6", "v5"),
    "arm64": ("v8",),
}

_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HASHES = {"sha256": 64, "sha384": 96, "sha512": 128}


class ManifestError(ValueError):
    """A manifest or digest that cannot be used; the text is meant for the user."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    zstd: bool = False


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageManifest:
    media_type: str
    config_digest: str | None


def normalize_media_type(content_type: str | None) -> str | None:
    """`application/json; charset=utf-8` -> `application/json`; None stays None."""
    if content_type is None:
        return None
    value = content_type.split(";", 1)[0].strip().lower()
    return value or None


def is_index_type(media_type: str | None) -> bool:
    return normalize_media_type(media_type) in INDEX_TYPES


def validate_digest(digest: str) -> tuple[str, str]:
    """Split `algorithm:hex`, checking the form; raise ManifestError when it is not a digest."""
    if not isinstance(digest, str):
        raise ManifestError("invalid digest: not a string")
    match = _DIGEST_RE.match(digest)
    if match is None:
        raise ManifestError(f"invalid digest {digest[:100]!r}")
    algorithm, encoded = match.group(1), match.group(2)
    expected_length = _HASHES.get(algorithm)
    if expected_length is not None and (len(encoded) != expected_length or not re.fullmatch(r"[0-9a-f]+", encoded)):
        raise ManifestError(f"invalid {algorithm} digest {digest[:100]!r}")
    return algorithm, encoded


def compute_digest(body: bytes, algorithm: str = "sha256") -> str:
    """The digest of exactly these bytes, as the registry computes Docker-Content-Digest."""
    if algorithm not in _HASHES:
        raise ManifestError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def _guess_media_type(doc: dict[str, object]) -> str:
    """containers/image GuessMIMEType, for bodies served without a useful Content-Type."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared in KNOWN_TYPES:
        return declared
    version = doc.get("schemaVersion")
    if version == 1:
        return DOCKER_V2_SCHEMA1_SIGNED if "signatures" in doc else DOCKER_V2_SCHEMA1
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    raise ManifestError("unrecognized manifest format: neither an image manifest nor an index")


def _platform(raw: object) -> Platform | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ManifestError("malformed manifest: a platform is not an object")
    os_ = raw.get("os", "")
    arch = raw.get("architecture", "")
    variant = raw.get("variant")
    if not isinstance(os_, str) or not isinstance(arch, str) or not isinstance(variant, str | None):
        raise ManifestError("malformed manifest: platform fields must be strings")
    return Platform(os=os_, architecture=arch, variant=variant or None)


def _descriptor(raw: object, position: int) -> Descriptor:
    if not isinstance(raw, dict):
        raise ManifestError(f"malformed index: entry {position} is not an object")
    digest = raw.get("digest")
    if not isinstance(digest, str):
        raise ManifestError(f"malformed index: entry {position} has no digest")
    validate_digest(digest)
    media_type = raw.get("mediaType", "")
    size = raw.get("size", 0)
    if not isinstance(media_type, str) or isinstance(size, bool) or not isinstance(size, int):
        raise ManifestError(f"malformed index: entry {position} has a bad mediaType or size")
    annotations = raw.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError(f"malformed index: entry {position} has bad annotations")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=_platform(raw.get("platform")),
        zstd=annotations.get(_ZSTD_ANNOTATION) == "true",
    )


def parse(body: bytes, content_type: str | None = None) -> Index | ImageManifest:
    """Parse a manifest or index body.  `content_type` is the response's Content-Type."""
    if len(body) > MAX_MANIFEST_SIZE:
        raise ManifestError(f"manifest too large: {len(body)} bytes (limit {MAX_MANIFEST_SIZE})")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ManifestError(f"malformed manifest: not valid JSON ({type(err).__name__})") from None
    if not isinstance(doc, dict):
        raise ManifestError("malformed manifest: not a JSON object")
    header_type = normalize_media_type(content_type)
    media_type = header_type if header_type in KNOWN_TYPES else _guess_media_type(doc)
    assert media_type is not None
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared in KNOWN_TYPES and declared != media_type:
        # containers/image ValidateUnambiguousManifestFormat: the body must not claim another type
        raise ManifestError(f"manifest served as {media_type} but declares mediaType {declared}")
    if media_type in INDEX_TYPES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise ManifestError("malformed index: no manifests list")
        if media_type == DOCKER_V2_LIST:
            for position, entry in enumerate(manifests):
                if isinstance(entry, dict) and entry.get("platform") is None:
                    raise ManifestError(f"malformed manifest list: entry {position} has no platform")
        return Index(media_type, tuple(_descriptor(entry, i) for i, entry in enumerate(manifests)))
    config = doc.get("config")
    config_digest: str | None = None
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        config_digest = config["digest"]
    elif media_type in (OCI_MANIFEST, DOCKER_V2_SCHEMA2):
        raise ManifestError("malformed image manifest: no config descriptor")
    return ImageManifest(media_type, config_digest)


def wanted_platforms(platform: Platform) -> list[Platform]:
    """containers/image WantedPlatforms with the local image's os/architecture/variant chosen."""
    order = _COMPATIBILITY.get(platform.architecture)
    variants: list[str | None]
    if platform.variant:
        variants = []
        if order is not None and platform.variant in order:
            variants = list(order[order.index(platform.variant) :])
        if not variants:
            variants = [platform.variant]
        variants.append(None)
    else:
        variants = [None, *(order or ())]
    return [Platform(platform.os, platform.architecture, variant) for variant in variants]


def _matches(image: Platform, wanted: Platform) -> bool:
    return (
        image.os == wanted.os
        and image.architecture == wanted.architecture
        and (image.variant or None) == (wanted.variant or None)
    )


def choose_instance(index: Index, platform: Platform) -> Descriptor:
    """The instance a pull for `platform` would get; ManifestError when there is none."""
    wanted = wanted_platforms(platform)
    if index.media_type == DOCKER_V2_LIST:
        for want in wanted:
            for entry in index.manifests:
                if entry.platform is not None and _matches(entry.platform, want):
                    return entry
    else:
        best: tuple[int, int, int] | None = None
        chosen: Descriptor | None = None
        for position, entry in enumerate(index.manifests):
            rank = len(wanted)  # no platform: acceptable, but after every platform match
            if entry.platform is not None:
                ranks = [i for i, want in enumerate(wanted) if _matches(entry.platform, want)]
                if not ranks:
                    continue
                rank = ranks[0]
            key = (rank, 0 if entry.zstd else 1, position)  # ChooseInstance prefers zstd
            if best is None or key < best:
                best, chosen = key, entry
        if chosen is not None:
            return chosen
    first = wanted[0]
    kind = "manifest list" if index.media_type == DOCKER_V2_LIST else "image index"
    raise ManifestError(
        f"no image found in {kind} for architecture {first.architecture!r}, "
        f"variant {first.variant or ''!r}, OS {first.os!r}"
    )


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What a manifest HEAD told: the digest (None when the header was missing) and type."""

    digest: str | None
    media_type: str | None


@dataclass(frozen=True, slots=True)
class ManifestBody:
    """A fetched manifest: the exact bytes, their media type and their (verified) digest."""

    body: bytes = field(repr=False)
    media_type: str | None
    digest: str
