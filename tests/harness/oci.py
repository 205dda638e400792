"""Tiny synthetic OCI images, built in Python, pushed with skopeo.

    layout = build_image(tmp_path / "img", seed="v1")                      # one linux/amd64 image
    layout = build_index(tmp_path / "idx", seed="v1", platforms=DEFAULT_PLATFORMS)  # multi-arch
    digest = push(layout, registry, "app:latest")                       # returns the stored digest

`OCILayout.digest` is the top-level manifest (or index) digest, `OCILayout.instances` the
per-platform manifest digests.  skopeo copies OCI manifests byte for byte, so these are the
digests the registry serves (`push` returns what skopeo reports, to be sure).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoupdated.model import Platform
from tests.harness.registry import Registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

DEFAULT_PLATFORMS = (
    Platform("linux", "amd64"),
    Platform("linux", "arm64", "v8"),
    Platform("linux", "arm", "v7"),
)


@dataclass
class OCILayout:
    path: Path
    digest: str  # what index.json points at: the image manifest or the image index
    media_type: str
    instances: dict[Platform, str] = field(default_factory=dict)  # per-platform manifest digests


def _write_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest.split(":", 1)[1]).write_bytes(data)
    return digest, len(data)


def _layer(seed: str) -> tuple[bytes, str]:
    """A gzip'd tar with one file; returns (compressed bytes, diff_id of the tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        content = f"autoupdated test image {seed}\n".encode()
        info = tarfile.TarInfo("etc/autoupdated-test")
        info.size = len(content)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    compressed = gzip.compress(tar_bytes, mtime=0)
    return compressed, "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _image_manifest(layout: Path, seed: str, platform: Platform) -> tuple[str, int]:
    layer, diff_id = _layer(f"{seed}/{platform}")
    layer_digest, layer_size = _write_blob(layout, layer)
    config: dict[str, object] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Cmd": ["/bin/true"], "Labels": {"autoupdated.test.seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "created": "2024-01-01T00:00:00Z",
    }
    if platform.variant:
        config["variant"] = platform.variant
    config_digest, config_size = _write_blob(layout, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    }
    return _write_blob(layout, json.dumps(manifest, indent=2).encode())


def _finish(layout: Path, media_type: str, digest: str, size: int) -> None:
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": media_type, "digest": digest, "size": size}],
    }
    (layout / "index.json").write_text(json.dumps(index))


def build_image(path: Path, *, seed: str, platform: Platform = DEFAULT_PLATFORMS[0]) -> OCILayout:
    """A single-platform image whose content (and so digest) depends on `seed`."""
    path.mkdir(parents=True, exist_ok=True)
    digest, size = _image_manifest(path, seed, platform)
    _finish(path, OCI_MANIFEST, digest, size)
    return OCILayout(path, digest, OCI_MANIFEST, {platform: digest})


def build_index(
    path: Path,
    *,
    seed: str,
    platforms: Sequence[Platform] = DEFAULT_PLATFORMS,
    seeds: dict[Platform, str] | None = None,
) -> OCILayout:
    """A multi-arch OCI index with one image per platform.  `seeds` overrides the seed of
    single platforms (to change one instance and keep the others)."""
    path.mkdir(parents=True, exist_ok=True)
    entries = []
    instances: dict[Platform, str] = {}
    for platform in platforms:
        instance_seed = (seeds or {}).get(platform, seed)
        digest, size = _image_manifest(path, instance_seed, platform)
        instances[platform] = digest
        descriptor_platform: dict[str, str] = {"architecture": platform.architecture, "os": platform.os}
        if platform.variant:
            descriptor_platform["variant"] = platform.variant
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": descriptor_platform})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    digest, size = _write_blob(path, json.dumps(index, indent=2).encode())
    _finish(path, OCI_INDEX, digest, size)
    return OCILayout(path, digest, OCI_INDEX, instances)


def push(
    layout: OCILayout,
    registry: Registry,
    name_tag: str,
    *,
    creds: tuple[str, str] | None = None,
    format: str | None = None,
    timeout: float = 120,
) -> str:
    """`skopeo copy [--all] oci:DIR docker://HOST/name:tag`; returns the digest skopeo pushed.

    `format="v2s2"` converts to a Docker schema2 manifest (or manifest list) on the way.
    """
    digestfile = layout.path.parent / f".{layout.path.name}.digest"
    args = ["skopeo", "--insecure-policy", "copy", "--quiet", "--digestfile", str(digestfile)]
    if layout.media_type == OCI_INDEX:
        args.append("--all")
    if registry.tls:
        certs = registry.workdir / "skopeo-certs"
        certs.mkdir(exist_ok=True)
        (certs / "ca.crt").write_text(registry.ca_pem)
        if registry.client_ca:
            registry.write_client_cert(certs, "client")
        args += ["--dest-cert-dir", str(certs)]
    else:
        args.append("--dest-tls-verify=false")
    if creds is not None:
        args += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
    if format is not None:
        args += ["--format", format]
    args += [f"oci:{layout.path}", f"docker://{registry.host_port}/{name_tag}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return digestfile.read_text().strip()
