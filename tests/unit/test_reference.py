"""The reference grammar of distribution/reference (regexp.go), in ASCII and anchored at both ends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoupdated.reference import ReferenceError, parse, parse_for_autoupdate

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8


@pytest.mark.parametrize(
    ("raw", "domain", "path", "tag", "digest"),
    [
        ("quay.io/org/app:latest", "quay.io", "org/app", "latest", None),
        ("localhost/app:v1", "localhost", "app", "v1", None),
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
        ("registry.example.com:443/a/b/c:1.2-rc_3", "registry.example.com:443", "a/b/c", "1.2-rc_3", None),
        ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
        ("Quay.IO/app:1", "Quay.IO", "app", "1", None),  # the domain may have capitals, the path not
        ("quay.io/a__b/c-d/e.f:1", "quay.io", "a__b/c-d/e.f", "1", None),
        ("quay.io/app:" + "T" * 128, "quay.io", "app", "T" * 128, None),
        (f"quay.io/app@{SHA256}", "quay.io", "app", None, SHA256),
        (f"quay.io/app:1@{SHA512}", "quay.io", "app", "1", SHA512),
    ],
)
def test_references_of_the_grammar_parse(raw: str, domain: str, path: str, tag: str | None, digest: str | None) -> None:
    ref = parse_for_autoupdate(raw)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("quay.io\n/app:latest", "has a malformed registry host"),
        ("quay.io/app:latest\n", "has a malformed tag"),
        ("quay.io/app\n:latest", "invalid reference format: 'quay.io/app\\n:latest'"),
        ("quay.io/app:lätest", "has a malformed tag"),
        ("quay.io/app:\uff11", "has a malformed tag"),  # a fullwidth digit: Python's \d would take it
        ("quay.io/äpp:1", "invalid reference format: 'quay.io/äpp:1'"),
        ("quäy.io/app:1", "has a malformed registry host"),
        ("quay.io/App:1", "repository name must be lowercase"),
        ("quay.io/org/Name:1", "repository name must be lowercase"),
        ("quay.io/app:" + "t" * 129, "has a malformed tag"),
        ("quay.io/app:-dash", "has a malformed tag"),
        ("quay.io/-app:1", "invalid reference format"),
        ("quay.io/a..b:1", "invalid reference format"),
        ("quay.io:port/app:1", "invalid reference format"),
        ("-quay.io/app:1", "has a malformed registry host"),
        ("quay.io/app@sha256:abc", "has a malformed digest"),
        (f"quay.io/app@{SHA256}\n", "has a malformed digest"),
        ("quay.io/app@sha256:" + "0" * 63, "invalid checksum digest length"),
        ("quay.io/app@sha256:" + "A" * 64, "invalid checksum digest format"),
        ("quay.io/app@md5:" + "0" * 32, "unsupported digest algorithm"),
        ("quay.io/" + "a" * 250 + ":1", "repository name must not be more than 255 characters"),
    ],
)
def test_references_outside_the_grammar_are_refused(raw: str, expected: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_for_autoupdate(raw)
    message = str(info.value)
    assert message.startswith("enforcing fully-qualified docker transport reference for auto updates: ")
    assert expected in message, message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("app:1", 'short name: auto updates require fully-qualified image reference: "app:1"'),
        ("quay.io/app", 'auto updates require fully-qualified image references (no tag): "quay.io/app"'),
        ("oci:/tmp/x", 'auto updates require the docker image transport but image is of transport "oci"'),
    ],
)
def test_podmans_texts_for_names_auto_update_cannot_use(raw: str, expected: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_for_autoupdate(raw)
    assert str(info.value).startswith(expected)


def test_short_names_are_docker_hub_for_plain_parse() -> None:
    ref = parse("alpine:3")
    assert (ref.domain, ref.repository, ref.api_host) == ("docker.io", "library/alpine", "registry-1.docker.io")
    with pytest.raises(ReferenceError, match="has a malformed tag"):
        parse("alpine:3\n")


@pytest.mark.parametrize(
    ("raw", "domain", "repository", "tag", "api_host"),
    [
        ("quay.io/org/app:1.2", "quay.io", "org/app", "1.2", "quay.io"),
        ("docker://quay.io/org/app:1", "quay.io", "org/app", "1", "quay.io"),
        ("docker.io/alpine:3", "docker.io", "library/alpine", "3", "registry-1.docker.io"),
        ("127.0.0.1:5000/a/b/c:latest", "127.0.0.1:5000", "a/b/c", "latest", "127.0.0.1:5000"),
        ("localhost/app:v1", "localhost", "app", "v1", "localhost"),
    ],
)
def test_fully_qualified_references(raw, domain, repository, tag, api_host):
    ref = parse_for_autoupdate(raw)
    assert (ref.domain, ref.repository, ref.tag, ref.api_host) == (domain, repository, tag, api_host)


def test_digest_references_keep_the_digest():
    digest = "sha256:" + "0" * 64
    ref = parse_for_autoupdate(f"quay.io/a/b:1@{digest}")
    assert ref.digest == digest and ref.tag == "1"
    assert str(ref) == f"quay.io/a/b:1@{digest}"


@given(st.text(max_size=300))
def test_reference_parser_fails_only_with_its_clear_error(text):
    try:
        ref = parse_for_autoupdate(text)
    except ReferenceError as err:
        assert str(err)
    else:
        assert parse(str(ref)) == ref  # what it accepts round-trips
