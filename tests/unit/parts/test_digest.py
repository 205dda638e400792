"""DigestComparer: HEAD first, GET only when needed, platform instances, per-run dedupe."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from autoupdated import manifest as mf
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.errors import RegistryError, RegistryLies, RegistryProtocolError, RegistryServerError
from autoupdated.model import Credentials, ImageInfo, Platform
from autoupdated.parts.digest import CheckResult, DigestComparer, local_update_available
from autoupdated.reference import parse
from tests.harness.registry import FakeRegistry

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARMV7 = Platform("linux", "arm", "v7")


def image_manifest(seed: str) -> bytes:
    config = "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "config": {"digest": config}, "layers": []}
    ).encode()


def oci_index(instances: dict[Platform, str]) -> bytes:
    manifests = []
    for platform, digest in instances.items():
        item = {"architecture": platform.architecture, "os": platform.os}
        if platform.variant:
            item["variant"] = platform.variant
        manifests.append({"mediaType": mf.OCI_MANIFEST, "digest": digest, "size": 1, "platform": item})
    return json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": manifests}).encode()


class World:
    def __init__(self) -> None:
        self.fake = FakeRegistry()
        self.single = self.fake.put("app", "single", image_manifest("single"), mf.OCI_MANIFEST)
        self.instances = {
            AMD64: self.fake.put("app", "amd64-1", image_manifest("amd64"), mf.OCI_MANIFEST),
            Platform("linux", "arm64", "v8"): self.fake.put("app", "arm64-1", image_manifest("arm64"), mf.OCI_MANIFEST),
            ARMV7: self.fake.put("app", "armv7-1", image_manifest("armv7"), mf.OCI_MANIFEST),
        }
        self.index = self.fake.put("app", "multi", oci_index(self.instances), mf.OCI_INDEX)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def comparer(world: World, tmp_path: Path) -> AsyncIterator[DigestComparer]:
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    tls = TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[])
    async with RegistryClient(tls=tls, transport=world.fake.transport()) as client:
        yield DigestComparer(client)


async def check(comparer: DigestComparer, ref: str, local: set[str], platform: Platform = AMD64) -> CheckResult:
    return await comparer.check(parse(ref), credentials=None, platform=platform, local_digests=frozenset(local))


async def test_head_digest_matches_local_no_get(world: World, comparer: DigestComparer) -> None:
    result = await check(comparer, "registry.test/app:single", {world.single})
    assert result == CheckResult(False, world.single)
    assert (world.fake.count("HEAD"), world.fake.count("GET")) == (1, 0)


async def test_single_manifest_changed_no_get(world: World, comparer: DigestComparer) -> None:
    result = await check(comparer, "registry.test/app:single", {"sha256:" + "0" * 64})
    assert result == CheckResult(True, world.single)
    assert (world.fake.count("HEAD"), world.fake.count("GET")) == (1, 0)


async def test_index_digest_matches_local_no_get(world: World, comparer: DigestComparer) -> None:
    assert await check(comparer, "registry.test/app:multi", {world.index}) == CheckResult(False, world.index)
    assert world.fake.count("GET") == 0


async def test_index_instance_matches_local(world: World, comparer: DigestComparer) -> None:
    result = await check(comparer, "registry.test/app:multi", {world.instances[AMD64]})
    assert result == CheckResult(False, world.instances[AMD64])
    assert (world.fake.count("HEAD"), world.fake.count("GET")) == (1, 1)
    (get,) = [c for c in world.fake.calls if c.method == "GET"]
    assert get.path == f"/v2/app/manifests/{world.index}"  # by digest: content-addressed, no race


async def test_index_instance_changed(world: World, comparer: DigestComparer) -> None:
    result = await check(comparer, "registry.test/app:multi", {"sha256:" + "0" * 64}, ARMV7)
    assert result == CheckResult(True, world.instances[ARMV7])


async def test_arm64_without_variant_picks_v8(world: World, comparer: DigestComparer) -> None:
    v8 = world.instances[Platform("linux", "arm64", "v8")]
    assert await check(comparer, "registry.test/app:multi", {v8}, ARM64) == CheckResult(False, v8)


async def test_no_instance_for_platform(world: World, comparer: DigestComparer) -> None:
    with pytest.raises(RegistryError, match="no image found in image index for architecture 's390x'"):
        await check(comparer, "registry.test/app:multi", set(), Platform("linux", "s390x"))


async def test_ten_concurrent_callers_share_one_head(world: World, comparer: DigestComparer) -> None:
    world.fake.delay = 0.05
    results = await asyncio.gather(*(check(comparer, "registry.test/app:single", {world.single}) for _ in range(10)))
    assert all(r == CheckResult(False, world.single) for r in results)
    assert world.fake.count("HEAD") == 1


async def test_a_prefetched_head_is_the_one_every_check_uses(world: World, comparer: DigestComparer) -> None:
    """The engine prefetches while podman lists the local images: the HEAD is on the wire before
    any local digest is known, and the checks after it send nothing more."""
    world.fake.delay = 0.05
    comparer.prefetch(parse("registry.test/app:single"), None)
    comparer.prefetch(parse("registry.test/app:single"), None)  # a second ask starts nothing
    comparer.prefetch(parse(f"registry.test/app@{world.single}"), None)  # a pin: nothing to ask
    await asyncio.sleep(0.01)
    assert world.fake.count("HEAD") == 1
    results = await asyncio.gather(*(check(comparer, "registry.test/app:single", {world.single}) for _ in range(3)))
    assert results == [CheckResult(False, world.single)] * 3
    assert (world.fake.count("HEAD"), world.fake.count("GET")) == (1, 0)


async def test_a_prefetch_nobody_asks_for_fails_quietly(
    world: World, comparer: DigestComparer, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that stops after prefetching (podman could not list the images) leaves no
    "exception was never retrieved" behind."""
    world.fake.override[("HEAD", "/v2/app/manifests/single")] = lambda r: httpx.Response(404)
    comparer.prefetch(parse("registry.test/app:single"), None)
    for _ in range(20):
        await asyncio.sleep(0.005)
    import gc

    gc.collect()
    assert "never retrieved" not in caplog.text
    with pytest.raises(RegistryError):  # and a later check still gets the error
        await check(comparer, "registry.test/app:single", {world.single})


async def test_platforms_and_local_digests_share_head_and_get(world: World, comparer: DigestComparer) -> None:
    world.fake.delay = 0.02
    questions = [
        (AMD64, {world.instances[AMD64]}),
        (ARMV7, {world.instances[ARMV7]}),
        (ARM64, {"sha256:" + "1" * 64}),
        (AMD64, {"sha256:" + "2" * 64}),
    ]
    results = await asyncio.gather(*(check(comparer, "registry.test/app:multi", local, p) for p, local in questions))
    assert [r.update_available for r in results] == [False, False, True, True]
    assert (world.fake.count("HEAD"), world.fake.count("GET")) == (1, 1)


async def test_failures_are_shared_for_the_run(world: World, comparer: DigestComparer) -> None:
    world.fake.override[("HEAD", "/v2/app/manifests/single")] = lambda r: httpx.Response(500)
    for _ in range(3):
        with pytest.raises(RegistryServerError):
            await check(comparer, "registry.test/app:single", {world.single})
    assert world.fake.count("HEAD") == 2  # the client's one retry of a 5xx (autoupdated/retry.py), then shared


async def test_credentials_are_part_of_the_key(world: World, comparer: DigestComparer) -> None:
    ref = parse("registry.test/app:single")
    for creds in (None, Credentials("a", "1"), Credentials("b", "2"), Credentials("a", "1")):
        await comparer.check(ref, credentials=creds, platform=AMD64, local_digests=frozenset())
    assert world.fake.count("HEAD") == 3


async def test_missing_digest_header_hashes_the_body(world: World, comparer: DigestComparer) -> None:
    world.fake.digest_header = False
    assert await check(comparer, "registry.test/app:single", {world.single}) == CheckResult(False, world.single)
    assert [c.method for c in world.fake.calls] == ["HEAD", "GET"]
    # an index without the header: the body fetched for hashing is reused for the platform pick
    result = await check(comparer, "registry.test/app:multi", {world.instances[AMD64]})
    assert result == CheckResult(False, world.instances[AMD64])
    assert [c.method for c in world.fake.calls] == ["HEAD", "GET", "HEAD", "GET"]


async def test_registry_lies(world: World, comparer: DigestComparer) -> None:
    world.fake.lie_on_get = True
    with pytest.raises(RegistryLies, match="registry lies"):
        await check(comparer, "registry.test/app:multi", set())


async def test_malformed_index_body(world: World, comparer: DigestComparer) -> None:
    body = b'{"mediaType": "' + mf.OCI_INDEX.encode() + b'", "manifests": [{"digest": 5}]}'
    world.fake.put("app", "broken", body, mf.OCI_INDEX)
    with pytest.raises(RegistryProtocolError, match="malformed index") as info:
        await check(comparer, "registry.test/app:broken", set())
    assert "registry.test/app:broken" in str(info.value)


async def test_unknown_content_type_gets_the_body(world: World, comparer: DigestComparer) -> None:
    world.fake.put("app", "plain", image_manifest("plain"), "application/json")
    result = await check(comparer, "registry.test/app:plain", set())
    assert result.update_available and world.fake.count("GET") == 1


async def test_digest_pinned(world: World, comparer: DigestComparer) -> None:
    pinned = f"registry.test/app@{world.single}"
    assert await check(comparer, pinned, {world.single}) == CheckResult(False, world.single)
    assert world.fake.calls == []
    pinned_index = f"registry.test/app@{world.index}"
    result = await check(comparer, pinned_index, {world.instances[AMD64]})
    assert result == CheckResult(False, world.instances[AMD64])
    assert [c.method for c in world.fake.calls] == ["GET"]


def test_local_policy() -> None:
    current = ImageInfo(id="a" * 64, digest="sha256:" + "1" * 64)
    assert not local_update_available(current, None)
    assert not local_update_available(current, current)
    assert local_update_available(current, ImageInfo(id="b" * 64, digest="sha256:" + "2" * 64))


async def test_registry_without_head_support_gets(world: World, comparer: DigestComparer) -> None:
    world.fake.override[("HEAD", "/v2/app/manifests/single")] = lambda r: httpx.Response(405)
    assert await check(comparer, "registry.test/app:single", {world.single}) == CheckResult(False, world.single)
    assert [c.method for c in world.fake.calls] == ["HEAD", "GET"]


class LocalPlatform:
    """A PlatformSource that counts how often the local image had to be inspected."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.calls = 0

    async def __call__(self) -> Platform:
        self.calls += 1
        return self.platform


async def test_an_index_is_compared_for_the_local_images_platform_not_the_hosts(
    world: World, comparer: DigestComparer
) -> None:
    # An arm/v7 image on this amd64 host: its own instance is the one to compare (podman's
    # HasDifferentDigest uses the local image's os/architecture/variant).
    source = LocalPlatform(ARMV7)
    result = await comparer.check(
        parse("registry.test/app:multi"),
        credentials=None,
        platform=source,
        local_digests=frozenset({world.instances[ARMV7]}),
    )
    assert result == CheckResult(False, world.instances[ARMV7])
    assert source.calls == 1
    source = LocalPlatform(ARM64)
    result = await comparer.check(
        parse("registry.test/app:multi"),
        credentials=None,
        platform=source,
        local_digests=frozenset({world.instances[AMD64]}),
    )
    assert result == CheckResult(True, world.instances[Platform("linux", "arm64", "v8")])


async def test_the_local_platform_is_not_looked_up_unless_the_remote_is_an_index(
    world: World, comparer: DigestComparer
) -> None:
    source = LocalPlatform(ARMV7)
    for tag, local in (("single", {world.single}), ("single", {"sha256:" + "0" * 64}), ("multi", {world.index})):
        await comparer.check(
            parse(f"registry.test/app:{tag}"), credentials=None, platform=source, local_digests=frozenset(local)
        )
    assert source.calls == 0
