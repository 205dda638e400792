"""Manifest parsing, digests and containers/image platform choice (pure)."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoupdated import manifest as mf
from autoupdated.model import Platform

D = {name: "sha256:" + hashlib.sha256(name.encode()).hexdigest() for name in "abcdefghij"}


def entry(
    digest: str, arch: str | None, variant: str | None = None, os: str = "linux", **extra: object
) -> dict[str, object]:
    item: dict[str, object] = {"mediaType": mf.OCI_MANIFEST, "digest": digest, "size": 100, **extra}
    if arch is not None:
        item["platform"] = {"architecture": arch, "os": os, **({"variant": variant} if variant else {})}
    return item


def index(*entries: dict[str, object], media_type: str = mf.OCI_INDEX) -> mf.Index:
    body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}).encode()
    parsed = mf.parse(body, media_type)
    assert isinstance(parsed, mf.Index)
    return parsed


def test_accept_header_lists_the_four_types() -> None:
    assert mf.ACCEPT.split(", ") == [mf.OCI_INDEX, mf.OCI_MANIFEST, mf.DOCKER_V2_LIST, mf.DOCKER_V2_SCHEMA2]


def test_compute_digest_hashes_exact_bytes() -> None:
    body = b'{"a": 1}\n'
    assert mf.compute_digest(body) == "sha256:" + hashlib.sha256(body).hexdigest()
    assert mf.compute_digest(body, "sha512").startswith("sha512:")
    with pytest.raises(mf.ManifestError):
        mf.compute_digest(body, "md5")


def test_validate_digest() -> None:
    assert mf.validate_digest(D["a"]) == ("sha256", D["a"][7:])
    for bad in ("sha256:abc", "nope", "sha256:" + "G" * 64, ""):
        with pytest.raises(mf.ManifestError):
            mf.validate_digest(bad)


def test_parse_image_manifest_and_guess_without_content_type() -> None:
    body = json.dumps({"schemaVersion": 2, "config": {"digest": D["a"], "size": 1}, "layers": []}).encode()
    parsed = mf.parse(body, "application/octet-stream")
    assert parsed == mf.ImageManifest(mf.OCI_MANIFEST, D["a"])
    docker = json.dumps(
        {"schemaVersion": 2, "mediaType": mf.DOCKER_V2_SCHEMA2, "config": {"digest": D["b"]}, "layers": []}
    )
    assert mf.parse(docker.encode(), None) == mf.ImageManifest(mf.DOCKER_V2_SCHEMA2, D["b"])


def test_parse_index_with_content_type_parameters() -> None:
    body = json.dumps({"schemaVersion": 2, "manifests": [entry(D["a"], "amd64")]}).encode()
    parsed = mf.parse(body, mf.OCI_INDEX + "; charset=utf-8")
    assert isinstance(parsed, mf.Index)
    assert parsed.manifests[0].platform == Platform("linux", "amd64")


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"not json", None, "not valid JSON"),
        (b"[]", None, "not a JSON object"),
        (b"\xff\xfe\x00", None, "not valid JSON"),
        (b'{"schemaVersion": 2}', None, "unrecognized manifest format"),
        (b'{"manifests": "x"}', mf.OCI_INDEX, "no manifests list"),
        (b'{"manifests": [{"digest": "sha256:zz"}]}', mf.OCI_INDEX, "invalid"),
        (b'{"manifests": [{"size": 1}]}', mf.OCI_INDEX, "no digest"),
        (b'{"mediaType": "' + mf.DOCKER_V2_LIST.encode() + b'", "manifests": []}', mf.OCI_INDEX, "declares mediaType"),
        (b'{"layers": []}', mf.OCI_MANIFEST, "no config descriptor"),
        (b'{"manifests": [{"digest": "' + D["a"].encode() + b'", "platform": 3}]}', mf.OCI_INDEX, "platform"),
    ],
)
def test_malformed_manifests_raise_manifest_error(body: bytes, content_type: str | None, fragment: str) -> None:
    with pytest.raises(mf.ManifestError) as info:
        mf.parse(body, content_type)
    assert fragment in str(info.value)


def test_too_large_manifest() -> None:
    with pytest.raises(mf.ManifestError, match="too large"):
        mf.parse(b" " * (mf.MAX_MANIFEST_SIZE + 1))


def test_wanted_platforms_follow_containers_image() -> None:
    def variants(arch: str, variant: str | None) -> list[str | None]:
        return [p.variant for p in mf.wanted_platforms(Platform("linux", arch, variant))]

    assert variants("arm64", None) == [None, "v8"]
    assert variants("arm64", "v8") == ["v8", None]
    assert variants("arm", "v7") == ["v7", "v6", "v5", None]
    assert variants("arm", None) == [None, "v8", "v7", "v6", "v5"]
    assert variants("amd64", None) == [None]
    assert variants("riscv64", "rva23") == ["rva23", None]


def test_choose_exact_platform() -> None:
    idx = index(entry(D["a"], "amd64"), entry(D["b"], "arm64", "v8"), entry(D["c"], "arm", "v7"))
    assert mf.choose_instance(idx, Platform("linux", "amd64")).digest == D["a"]
    assert mf.choose_instance(idx, Platform("linux", "arm", "v7")).digest == D["c"]


def test_arm64_without_variant_falls_back_to_v8() -> None:
    idx = index(entry(D["a"], "amd64"), entry(D["b"], "arm64", "v8"))
    assert mf.choose_instance(idx, Platform("linux", "arm64")).digest == D["b"]


def test_arm64_v8_prefers_v8_then_no_variant() -> None:
    idx = index(entry(D["a"], "arm64"), entry(D["b"], "arm64", "v8"))
    assert mf.choose_instance(idx, Platform("linux", "arm64", "v8")).digest == D["b"]
    assert mf.choose_instance(idx, Platform("linux", "arm64")).digest == D["a"]
    only_bare = index(entry(D["a"], "arm64"))
    assert mf.choose_instance(only_bare, Platform("linux", "arm64", "v8")).digest == D["a"]


def test_arm_v7_falls_back_to_v6_not_v8() -> None:
    idx = index(entry(D["a"], "arm", "v8"), entry(D["b"], "arm", "v6"))
    assert mf.choose_instance(idx, Platform("linux", "arm", "v7")).digest == D["b"]


def test_os_must_match() -> None:
    idx = index(entry(D["a"], "amd64", os="windows"))
    with pytest.raises(mf.ManifestError, match="no image found in image index for architecture 'amd64'"):
        mf.choose_instance(idx, Platform("linux", "amd64"))


def test_oci_index_prefers_zstd_then_position_and_platformless_last() -> None:
    zstd = {"annotations": {"io.github.containers.compression.zstd": "true"}}
    idx = index(entry(D["a"], None), entry(D["b"], "amd64"), entry(D["c"], "amd64", **zstd))
    assert mf.choose_instance(idx, Platform("linux", "amd64")).digest == D["c"]
    assert mf.choose_instance(idx, Platform("linux", "s390x")).digest == D["a"]  # no platform: acceptable
    first = index(entry(D["d"], "amd64"), entry(D["e"], "amd64"))
    assert mf.choose_instance(first, Platform("linux", "amd64")).digest == D["d"]


def test_docker_list_first_match_in_wanted_order() -> None:
    docker = [
        {
            "mediaType": mf.DOCKER_V2_SCHEMA2,
            "digest": D["a"],
            "size": 1,
            "platform": {"architecture": "arm64", "os": "linux"},
        },
        {
            "mediaType": mf.DOCKER_V2_SCHEMA2,
            "digest": D["b"],
            "size": 1,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
    ]
    idx = index(*docker, media_type=mf.DOCKER_V2_LIST)
    assert mf.choose_instance(idx, Platform("linux", "arm64", "v8")).digest == D["b"]
    assert mf.choose_instance(idx, Platform("linux", "arm64")).digest == D["a"]
    with pytest.raises(mf.ManifestError, match="no image found in manifest list"):
        mf.choose_instance(idx, Platform("linux", "amd64"))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(["schemaVersion", "mediaType", "manifests", "config", "layers", "digest", "platform", "size"])
_manifestish = st.dictionaries(_keys, _json, max_size=6)


@given(
    st.one_of(st.binary(max_size=200), _manifestish.map(lambda d: json.dumps(d).encode())),
    st.sampled_from([None, *mf.KNOWN_TYPES, "text/plain"]),
)
def test_parse_never_crashes_with_anything_else(body: bytes, content_type: str | None) -> None:
    try:
        parsed = mf.parse(body, content_type)
    except mf.ManifestError:
        return
    if isinstance(parsed, mf.Index):
        with contextlib.suppress(mf.ManifestError):
            mf.choose_instance(parsed, Platform("linux", "amd64"))


_platforms = st.builds(
    Platform,
    os=st.sampled_from(["linux", "windows"]),
    architecture=st.sampled_from(["amd64", "arm64", "arm", "s390x"]),
    variant=st.sampled_from([None, "v5", "v6", "v7", "v8"]),
)


@given(st.lists(_platforms, min_size=1, max_size=6), _platforms)
def test_choice_is_the_best_ranked_compatible_instance(platforms: list[Platform], wanted: Platform) -> None:
    entries = [entry(D["abcdefghij"[i]], p.architecture, p.variant, p.os) for i, p in enumerate(platforms)]
    idx = index(*entries)
    order = mf.wanted_platforms(wanted)
    ranks = [order.index(p) for p in platforms if p in order]
    try:
        chosen = mf.choose_instance(idx, wanted)
    except mf.ManifestError:
        assert not ranks
        return
    assert chosen.platform is not None
    assert order.index(chosen.platform) == min(ranks)
    assert (chosen.platform.os, chosen.platform.architecture) == (wanted.os, wanted.architecture)
