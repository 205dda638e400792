"""Credentials from the containers auth-file chain (containers/image key matching)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoupdated.adapters.registry import authfile as authfile_module
from autoupdated.adapters.registry import tlsconfig
from autoupdated.adapters.registry.authfile import (
    AuthFileError,
    CredentialHelpers,
    auth_file_chain,
    credentials_for,
    load_credentials,
    lookup_in_document,
    parse_auth_document,
)
from autoupdated.errors import RegistryConfigError
from autoupdated.model import Credentials
from autoupdated.reference import parse

SECRET = "pa55-w0rd-that-must-never-show"


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for var in ("REGISTRY_AUTH_FILE", "XDG_CONFIG_HOME", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    # registries.conf (for credential-helpers) from here, never the host's /etc/containers.
    (tmp_path / "registries.conf").write_text("")
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "registries.conf"))
    monkeypatch.setattr(tlsconfig, "DEFAULT_REGISTRIES_CONF_DIR", tmp_path / "registries.conf.d")
    authfile_module._warned.clear()
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("HOME", str(home))
    return tmp_path


def write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_most_specific_key_wins(clean_env: Path) -> None:
    authfile = write(
        clean_env / "auth.json",
        {
            "auths": {
                "quay.io": {"auth": auth("host", "h")},
                "quay.io/org": {"auth": auth("ns", "n")},
                "quay.io/org/app": {"auth": auth("repo", "r")},
            }
        },
    )
    assert credentials_for(parse("quay.io/org/app:1"), str(authfile)) == Credentials("repo", "r")
    assert credentials_for(parse("quay.io/org/other:1"), str(authfile)) == Credentials("ns", "n")
    assert credentials_for(parse("quay.io/else/x:1"), str(authfile)) == Credentials("host", "h")
    assert credentials_for(parse("ghcr.io/org/app:1"), str(authfile)) is None


def test_legacy_url_keys_and_docker_hub(clean_env: Path) -> None:
    authfile = write(
        clean_env / "auth.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": auth("hub", "x")},
                "https://registry.example:5000/v1/": {"auth": auth("legacy", "y")},
            }
        },
    )
    assert credentials_for(parse("docker.io/library/nginx:latest"), str(authfile)) == Credentials("hub", "x")
    assert credentials_for(parse("registry.example:5000/a:1"), str(authfile)) == Credentials("legacy", "y")


def test_identity_token_and_nul_padding(clean_env: Path) -> None:
    authfile = write(
        clean_env / "auth.json",
        {"auths": {"r.example": {"auth": auth("u", "p\x00\x00"), "identitytoken": "idtok"}}},
    )
    creds = credentials_for(parse("r.example/a:1"), str(authfile))
    assert creds == Credentials("u", "p", "idtok")


def test_an_explicit_missing_authfile_is_read_as_empty_with_one_warning_as_podman_does(
    clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """containers/image reads a missing explicit auth file as empty: podman checks anonymously
    (seen in tests/machine/test_error_texts.py), so do we, and say so once."""
    missing = clean_env / "nope.json"
    with caplog.at_level(logging.WARNING):
        assert credentials_for(parse("r.example/a:1"), str(missing)) is None
        assert credentials_for(parse("r.example/b:1"), str(missing)) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(missing) in warnings[0] and "io.containers.autoupdate.authfile" in warnings[0]
    assert "as podman does" in warnings[0]


def test_registry_auth_file_env_is_exclusive(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write(clean_env / "env.json", {"auths": {}})
    write(clean_env / "home" / ".docker" / "config.json", {"auths": {"r.example": {"auth": auth("d", "d")}}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(env_file))
    assert credentials_for(parse("r.example/a:1"), None) is None
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(clean_env / "missing.json"))
    assert credentials_for(parse("r.example/a:1"), None) is None  # not the default chain either


def test_default_chain_order_and_skipping_missing(clean_env: Path) -> None:
    home = clean_env / "home"
    ref = parse("r.example/a:1")
    assert credentials_for(ref, None) is None  # nothing anywhere
    write(home / ".dockercfg", {"r.example": {"auth": auth("legacycfg", "1")}})
    assert credentials_for(ref, None) == Credentials("legacycfg", "1")
    write(home / ".docker" / "config.json", {"auths": {"r.example": {"auth": auth("docker", "2")}}})
    assert credentials_for(ref, None) == Credentials("docker", "2")
    write(home / ".config" / "containers" / "auth.json", {"auths": {"r.example": {"auth": auth("config", "3")}}})
    assert credentials_for(ref, None) == Credentials("config", "3")
    write(clean_env / "run" / "containers" / "auth.json", {"auths": {"r.example": {"auth": auth("runtime", "4")}}})
    assert credentials_for(ref, None) == Credentials("runtime", "4")


def test_chain_without_xdg_runtime_dir_uses_run_containers_uid(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.delenv("XDG_RUNTIME_DIR")
    chain = [str(p) for p, _ in auth_file_chain(None, home=clean_env / "home")]
    assert chain[0] == f"/run/containers/{os.getuid()}/auth.json"
    assert chain[1:] == [
        str(clean_env / "home" / ".config" / "containers" / "auth.json"),
        str(clean_env / "home" / ".docker" / "config.json"),
        str(clean_env / "home" / ".dockercfg"),
    ]


def test_empty_entry_is_a_credential_helper_marker(helper: Path, clean_env: Path) -> None:
    # The empty entry carries no credentials; the helper it marks is asked (and has none here).
    authfile = write(clean_env / "auth.json", {"auths": {"r.example": {}}, "credHelpers": {"r.example": "test"}})
    assert credentials_for(parse("r.example/a:1"), str(authfile)) is None
    assert (helper / "asked").read_text() == "r.example\n"


@pytest.mark.parametrize(
    "content",
    [
        "{not json " + SECRET,
        json.dumps({"auths": {"r.example": {"auth": "%%%" + SECRET}}}),
        json.dumps({"auths": ["r.example", SECRET]}),
        json.dumps([SECRET]),
        json.dumps({"auths": {"r.example": {"auth": 5}}}),
    ],
)
def test_malformed_files_name_the_file_but_not_the_content(clean_env: Path, content: str) -> None:
    authfile = clean_env / "bad.json"
    authfile.write_text(content)
    with pytest.raises(AuthFileError) as info:
        credentials_for(parse("r.example/a:1"), str(authfile))
    assert str(authfile) in str(info.value)
    assert SECRET not in str(info.value)
    assert "%%%" not in str(info.value)


def test_missing_colon_is_skipped_with_a_warning_without_secret(
    clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    authfile = write(
        clean_env / "auth.json", {"auths": {"r.example": {"auth": base64.b64encode(SECRET.encode()).decode()}}}
    )
    with caplog.at_level(logging.DEBUG):
        assert credentials_for(parse("r.example/a:1"), str(authfile)) is None
    assert "missing colon" in caplog.text
    assert SECRET not in caplog.text


def test_credentials_repr_hides_password() -> None:
    creds = Credentials("u", SECRET, "tok-" + SECRET)
    assert SECRET not in repr(creds) and SECRET not in str(creds)


_keys = st.sampled_from(["r.example", "r.example/a", "https://r.example/v1/", "http://r.example", "other", "docker.io"])
_entry = st.fixed_dictionaries(
    {},
    optional={
        "auth": st.one_of(
            st.text(max_size=20), st.builds(auth, st.text(max_size=5), st.text(max_size=5)), st.integers()
        ),
        "identitytoken": st.one_of(st.text(max_size=10), st.none()),
    },
)
_doc = st.one_of(
    st.dictionaries(st.just("auths"), st.dictionaries(_keys, _entry, max_size=4)),
    st.dictionaries(_keys, _entry, max_size=3),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_doc, st.booleans())
def test_parsing_never_crashes_with_anything_else(doc: object, legacy: bool) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    try:
        entries = parse_auth_document(text, source="/x/auth.json", legacy=legacy)
        found = lookup_in_document(entries, parse("r.example/a/b:1"), source="/x/auth.json", legacy=legacy)
    except AuthFileError as err:
        assert "/x/auth.json" in str(err)
        return
    assert found is None or isinstance(found, Credentials)


# -- what a label may point at: only regular, small files are read, never on the event loop ------


async def _ticking_while(make: Callable[[], Awaitable[object]]) -> tuple[BaseException | None, int, float]:
    """Run `make()` while another task ticks every 10 ms: (its error, ticks, seconds)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    start = time.monotonic()
    error: BaseException | None = None
    try:
        await make()
    except AuthFileError as err:
        error = err
    finally:
        elapsed = time.monotonic() - start
        task.cancel()
    return error, ticks, elapsed


def test_dev_zero_as_authfile_is_refused_without_reading(clean_env: Path) -> None:
    with pytest.raises(AuthFileError) as info:
        credentials_for(parse("r.example/a:1"), "/dev/zero")
    assert str(info.value).startswith("reading auth file /dev/zero: is a device, not a regular file")
    assert isinstance(info.value, RegistryConfigError)


async def test_fifo_as_authfile_is_refused_and_the_loop_keeps_running(clean_env: Path) -> None:
    fifo = clean_env / "auth.fifo"
    os.mkfifo(fifo)
    error, _, elapsed = await _ticking_while(lambda: load_credentials(parse("r.example/a:1"), str(fifo), timeout=2.0))
    assert error is not None and f"reading auth file {fifo}: is a FIFO, not a regular file" in str(error)
    assert elapsed < 2.0
    with pytest.raises(AuthFileError, match="is a FIFO"):
        credentials_for(parse("r.example/a:1"), str(fifo))  # the sync path does not block either


async def test_a_hung_read_times_out_while_the_loop_keeps_running(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import autoupdated.adapters.registry.authfile as authfile

    release = threading.Event()

    def hung(ref: object, path: object, *, home: object = None, helpers: object = None) -> None:
        release.wait(5)  # a read on a dead NFS mount

    monkeypatch.setattr(authfile, "credentials_for", hung)
    path = clean_env / "auth.json"
    try:
        error, ticks, elapsed = await _ticking_while(
            lambda: load_credentials(parse("r.example/a:1"), str(path), timeout=0.3)
        )
    finally:
        release.set()
    assert error is not None and str(error).startswith(f"reading auth file {path}: no answer within 0.3 s")
    assert 0.25 < elapsed < 1.5 and ticks >= 10


def test_directory_as_authfile(clean_env: Path) -> None:
    with pytest.raises(AuthFileError, match="is a directory, not a file"):
        credentials_for(parse("r.example/a:1"), str(clean_env))


def test_an_authfile_over_1_mib_is_refused(clean_env: Path) -> None:
    big = clean_env / "big.json"
    big.write_text('{"auths": {}, "pad": "' + "x" * (2 * 1024 * 1024) + '"}')
    with pytest.raises(AuthFileError) as info:
        credentials_for(parse("r.example/a:1"), str(big))
    assert str(info.value).startswith(f"reading auth file {big}: larger than 1024 KiB")


async def test_load_credentials_reads_like_credentials_for(clean_env: Path) -> None:
    path = write(clean_env / "auth.json", {"auths": {"r.example": {"auth": auth("u", SECRET)}}})
    assert await load_credentials(parse("r.example/a:1"), str(path)) == Credentials("u", SECRET)
    assert await load_credentials(parse("r.example/a:1"), str(clean_env / "nope.json")) is None


HELPER = """#!/bin/sh
# docker-credential-test: answers `get` from $HELPER_ANSWERS/<registry>.json, as a real helper
read -r registry
[ "$1" = get ] || exit 2
echo "$registry" >> "$HELPER_ANSWERS/asked"
if [ -f "$HELPER_ANSWERS/$registry.fail" ]; then echo "helper broke; token $SECRET_TEXT"; exit 3; fi
if [ ! -f "$HELPER_ANSWERS/$registry.json" ]; then echo "credentials not found in native keychain"; exit 1; fi
cat "$HELPER_ANSWERS/$registry.json"
"""


@pytest.fixture
def helper(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`docker-credential-test` on PATH; its answers go in the returned directory."""
    bin_dir, answers = clean_env / "bin", clean_env / "answers"
    bin_dir.mkdir()
    answers.mkdir()
    script = bin_dir / "docker-credential-test"
    script.write_text(HELPER)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("HELPER_ANSWERS", str(answers))
    monkeypatch.setenv("SECRET_TEXT", SECRET)
    return answers


def test_a_cred_helper_entry_runs_the_helper_with_the_registry_on_stdin(helper: Path, clean_env: Path) -> None:
    (helper / "reg.test:5000.json").write_text(
        json.dumps({"ServerURL": "reg.test:5000", "Username": "bob", "Secret": SECRET})
    )
    authfile = write(
        clean_env / "auth.json",
        {"credHelpers": {"reg.test:5000": "test"}, "auths": {"reg.test:5000": {"auth": auth("other", "x")}}},
    )
    # The helper wins over an auths entry for the same registry, as in containers/image.
    assert credentials_for(parse("reg.test:5000/ns/app:1"), str(authfile)) == Credentials("bob", SECRET)
    assert (helper / "asked").read_text() == "reg.test:5000\n"


def test_a_helpers_token_user_is_an_identity_token(helper: Path, clean_env: Path) -> None:
    (helper / "reg.test.json").write_text(json.dumps({"Username": "<token>", "Secret": SECRET}))
    authfile = write(clean_env / "auth.json", {"credHelpers": {"reg.test": "test"}})
    assert credentials_for(parse("reg.test/app:1"), str(authfile)) == Credentials(identity_token=SECRET)


def test_a_helper_without_credentials_moves_on_to_the_next_file(helper: Path, clean_env: Path) -> None:
    write(clean_env / "home" / ".config" / "containers" / "auth.json", {"credHelpers": {"reg.test": "test"}})
    write(clean_env / "home" / ".docker" / "config.json", {"auths": {"reg.test": {"auth": auth("carol", SECRET)}}})
    assert credentials_for(parse("reg.test/app:1"), None) == Credentials("carol", SECRET)
    assert (helper / "asked").read_text() == "reg.test\n"


def test_a_failing_helper_is_an_error_that_names_it_and_never_quotes_its_output(helper: Path, clean_env: Path) -> None:
    (helper / "reg.test.fail").write_text("")
    authfile = write(clean_env / "auth.json", {"credHelpers": {"reg.test": "test"}})
    with pytest.raises(AuthFileError) as caught:
        credentials_for(parse("reg.test/app:1"), str(authfile))
    assert "docker-credential-test" in str(caught.value) and "exit status 3" in str(caught.value)
    assert SECRET not in str(caught.value)
    missing = write(clean_env / "auth2.json", {"credHelpers": {"reg.test": "absent"}})
    with pytest.raises(AuthFileError, match="docker-credential-absent is not on PATH"):
        credentials_for(parse("reg.test/app:1"), str(missing))


def test_creds_store_is_not_run_as_containers_image_never_runs_it_with_one_warning(
    helper: Path, clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (helper / "reg.test.json").write_text(json.dumps({"Username": "bob", "Secret": SECRET}))
    authfile = write(clean_env / "auth.json", {"credsStore": "test", "auths": {}})
    with caplog.at_level(logging.WARNING):
        assert credentials_for(parse("reg.test/app:1"), str(authfile)) is None
        assert credentials_for(parse("reg.test/other:1"), str(authfile)) is None
    assert not (helper / "asked").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(authfile) in warnings[0] and '"credsStore"' in warnings[0] and "podman" in warnings[0]
    assert "credHelpers" in warnings[0] and "credential-helpers" in warnings[0]
    assert '"test"' not in warnings[0]  # the file's content (the helper's name) is not quoted


def _user_auth_json(clean_env: Path, registry: str, token: str) -> None:
    write(clean_env / "home" / ".config" / "containers" / "auth.json", {"auths": {registry: {"auth": token}}})


def _conf(clean_env: Path, text: str, drop_in: str | None = None) -> None:
    (clean_env / "registries.conf").write_text(text)
    if drop_in is not None:
        (clean_env / "registries.conf.d").mkdir(exist_ok=True)
        (clean_env / "registries.conf.d" / "50-helpers.conf").write_text(drop_in)


def _answer(helper: Path, registry: str, user: str) -> None:
    (helper / f"{registry}.json").write_text(json.dumps({"Username": user, "Secret": SECRET}))


def test_registries_conf_credential_helpers_are_read_from_the_main_file_and_a_drop_in_replaces_them(
    clean_env: Path,
) -> None:
    assert CredentialHelpers.configured() == CredentialHelpers(("containers-auth.json",), "the default")
    _conf(clean_env, 'credential-helpers = ["containers-auth.json", "test"]\n')
    found = CredentialHelpers.configured()
    assert found.names == ("containers-auth.json", "test") and found.source.endswith("registries.conf")
    _conf(clean_env, 'credential-helpers = ["containers-auth.json", "test"]\n', 'credential-helpers = ["other"]\n')
    assert CredentialHelpers.configured().names == ("other",)
    _conf(clean_env, 'credential-helpers = ["test"]\n', "credential-helpers = []\n")  # empty: no change
    assert CredentialHelpers.configured().names == ("test",)
    _conf(clean_env, "credential-helpers = [1]\n")
    with pytest.raises(AuthFileError, match="credential-helpers must be a list of helper names"):
        CredentialHelpers.configured()


def test_a_registries_conf_helper_runs_when_the_auth_files_have_nothing(helper: Path, clean_env: Path) -> None:
    _answer(helper, "reg.test", "from-helper")
    _conf(clean_env, 'credential-helpers = ["containers-auth.json", "test"]\n')
    assert credentials_for(parse("reg.test/app:1"), None) == Credentials("from-helper", SECRET)
    assert (helper / "asked").read_text().split() == ["reg.test"]  # the registry, never the repository


def test_credential_helpers_are_tried_in_order_and_the_first_with_credentials_wins(
    helper: Path, clean_env: Path
) -> None:
    _answer(helper, "reg.test", "from-helper")
    _user_auth_json(clean_env, "reg.test", auth("f", "f"))
    _conf(clean_env, 'credential-helpers = ["containers-auth.json", "test"]\n')
    assert credentials_for(parse("reg.test/app:1"), None) == Credentials("f", "f")
    assert not (helper / "asked").exists()  # the auth files answered first
    _conf(clean_env, 'credential-helpers = ["test", "containers-auth.json"]\n')
    assert credentials_for(parse("reg.test/app:1"), None) == Credentials("from-helper", SECRET)


def test_without_containers_auth_json_in_the_list_the_auth_files_are_not_read(helper: Path, clean_env: Path) -> None:
    _user_auth_json(clean_env, "reg.test", auth("f", "f"))
    _conf(clean_env, 'credential-helpers = ["test"]\n')
    assert credentials_for(parse("reg.test/app:1"), None) is None  # the helper: not found


def test_a_helper_that_fails_moves_on_to_the_next_and_its_error_counts_only_when_none_has_credentials(
    helper: Path, clean_env: Path
) -> None:
    (helper / "reg.test.fail").write_text("")
    _user_auth_json(clean_env, "reg.test", auth("f", "f"))
    _conf(clean_env, 'credential-helpers = ["test", "containers-auth.json"]\n')
    assert credentials_for(parse("reg.test/app:1"), None) == Credentials("f", "f")
    _conf(clean_env, 'credential-helpers = ["test", "absent", "containers-auth.json"]\n')
    with pytest.raises(AuthFileError) as caught:
        credentials_for(parse("other.test/app:1"), None)  # nobody has credentials: both errors
    assert "credentials not found" not in str(caught.value)
    (helper / "other.test.fail").write_text("")
    with pytest.raises(AuthFileError) as caught:
        credentials_for(parse("other.test/app:1"), None)
    text = str(caught.value)
    assert text.startswith("errors looking up credentials: ")
    assert "docker-credential-test" in text and "exit status 3" in text
    assert "docker-credential-absent is not on PATH" in text and "credential-helpers in " in text
    assert SECRET not in text  # the failing helper printed it


def test_a_broken_auth_file_is_one_helpers_error_and_the_next_helper_still_answers(
    helper: Path, clean_env: Path
) -> None:
    (clean_env / "home" / ".config" / "containers").mkdir(parents=True)
    (clean_env / "home" / ".config" / "containers" / "auth.json").write_text("{not json")
    _answer(helper, "reg.test", "from-helper")
    _conf(clean_env, 'credential-helpers = ["containers-auth.json", "test"]\n')
    assert credentials_for(parse("reg.test/app:1"), None) == Credentials("from-helper", SECRET)
    _conf(clean_env, "")
    with pytest.raises(AuthFileError, match="invalid JSON"):
        credentials_for(parse("reg.test/app:1"), None)


def test_an_explicit_authfile_stands_for_containers_auth_json_and_the_other_helpers_still_run(
    helper: Path, clean_env: Path
) -> None:
    _answer(helper, "reg.test", "from-helper")
    empty = write(clean_env / "label.json", {"auths": {}})
    _conf(clean_env, 'credential-helpers = ["containers-auth.json", "test"]\n')
    assert credentials_for(parse("reg.test/app:1"), str(empty)) == Credentials("from-helper", SECRET)


def test_docker_config_moves_the_docker_config_json(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(clean_env / "dockercfg"))
    write(clean_env / "dockercfg" / "config.json", {"auths": {"reg.test": {"auth": auth("d", "d")}}})
    assert credentials_for(parse("reg.test/app:1"), None) == Credentials("d", "d")


async def test_a_run_reads_registries_conf_once_and_each_repository_once(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CredentialsLookup: sixty containers over twenty images made sixty lookups, each parsing
    registries.conf in a thread; a run now parses it once and looks each repository up once."""
    authfile = write(
        clean_env / "auth.json",
        {"auths": {"quay.io/org": {"auth": auth("ns", "n")}, "ghcr.io": {"auth": auth("gh", "g")}}},
    )
    configured, looked_up = [], []
    real_configured, real_credentials_for = CredentialHelpers.configured, authfile_module.credentials_for

    def counting_configured() -> CredentialHelpers:
        configured.append(1)
        return real_configured()

    def counting_credentials_for(ref: object, path: object, **kw: object) -> Credentials | None:
        looked_up.append((str(ref), path))
        return real_credentials_for(ref, path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(CredentialHelpers, "configured", staticmethod(counting_configured))
    monkeypatch.setattr(authfile_module, "credentials_for", counting_credentials_for)
    lookup = authfile_module.CredentialsLookup()
    asked = [
        ("quay.io/org/app:1", str(authfile)),
        ("quay.io/org/app:2", str(authfile)),
        ("ghcr.io/x/y:latest", str(authfile)),
        ("quay.io/org/app:1", None),
    ] * 15
    found = await asyncio.gather(*(lookup(parse(ref), path) for ref, path in asked))
    assert found[:4] == [Credentials("ns", "n"), Credentials("ns", "n"), Credentials("gh", "g"), None]
    assert found == found[:4] * 15
    assert len(configured) == 1
    # one per (repository, authfile): the two tags of quay.io/org/app share theirs
    assert sorted((ref.rsplit(":", 1)[0], str(path)) for ref, path in looked_up) == sorted(
        [("quay.io/org/app", str(authfile)), ("ghcr.io/x/y", str(authfile)), ("quay.io/org/app", "None")]
    )
    # the next run (a new lookup) reads the files afresh: an edited auth file counts
    write(authfile, {"auths": {"quay.io/org": {"auth": auth("renewed", "r2")}}})
    assert await authfile_module.CredentialsLookup()(parse("quay.io/org/app:1"), str(authfile)) == Credentials(
        "renewed", "r2"
    )
    assert len(configured) == 2


async def test_a_run_shares_a_lookup_error_with_every_container(clean_env: Path) -> None:
    bad = clean_env / "bad.json"
    bad.write_text("{not json")
    lookup = authfile_module.CredentialsLookup()
    results = await asyncio.gather(
        *(lookup(parse(f"r.example/a:{i}"), str(bad)) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, AuthFileError) and str(bad) in str(r) for r in results), results
    assert SECRET not in "".join(str(r) for r in results)


async def test_a_broken_registries_conf_fails_each_lookup_with_its_name(clean_env: Path) -> None:
    (clean_env / "registries.conf").write_text("credential-helpers = [\n")
    lookup = authfile_module.CredentialsLookup()
    results = await asyncio.gather(
        *(lookup(parse(f"r.example/a{i}:1"), None) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, AuthFileError) and "registries.conf" in str(r) for r in results), results
