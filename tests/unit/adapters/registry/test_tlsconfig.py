"""registries.conf (v1/v2, drop-ins, prefixes) and certs.d, as containers/image reads them."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from autoupdated.adapters.registry.tlsconfig import (
    RegistriesConfError,
    RegistryEntry,
    TLSConfig,
    TLSConfigError,
    find_registry,
    parse_registries_conf,
    pull_sources,
)


def config(tmp_path: Path, main: str = "", drop_ins: dict[str, str] | None = None, **kw: object) -> TLSConfig:
    conf = tmp_path / "registries.conf"
    conf.write_text(main)
    directory = tmp_path / "registries.conf.d"
    directory.mkdir(exist_ok=True)
    for name, text in (drop_ins or {}).items():
        (directory / name).write_text(text)
    certs = tmp_path / "certs.d"
    certs.mkdir(exist_ok=True)
    return TLSConfig(registries_conf=conf, registries_conf_dirs=[directory], certs_dirs=[certs], **kw)  # type: ignore[arg-type]


def test_v2_entries_prefix_defaults_to_location() -> None:
    entries = parse_registries_conf(
        """
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "reg.example:5000"
insecure = true
[[registry]]
prefix = "quay.io/blocked"
location = "quay.io/blocked"
blocked = true
"""
    )
    assert entries == [
        RegistryEntry("reg.example:5000", "reg.example:5000", insecure=True),
        RegistryEntry("quay.io/blocked", "quay.io/blocked", blocked=True),
    ]


def test_v1_lists() -> None:
    entries = parse_registries_conf(
        """
[registries.search]
registries = ["docker.io"]
[registries.insecure]
registries = ["a.example:5000", "b.example"]
[registries.block]
registries = ["b.example"]
"""
    )
    assert RegistryEntry("a.example:5000", "a.example:5000", insecure=True) in entries
    assert RegistryEntry("b.example", "b.example", insecure=True, blocked=True) in entries


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[[registry]]\nlocation = "x"\n[registries.insecure]\nregistries = ["y"]\n', "mixing sysregistry v1/v2"),
        ('[[registry]]\nlocation = "https://x.example"\n', "URI schemes are not supported"),
        ("[[registry]]\ninsecure = true\n", "needs a location or a prefix"),
        ('[[registry]]\nlocation = "x"\ninsecure = "yes"\n', "must be true or false"),
        ("this is = = not toml", "loading registries configuration"),
        ('registry = "x"', "array of tables"),
    ],
)
def test_bad_registries_conf(text: str, fragment: str) -> None:
    with pytest.raises(RegistriesConfError, match=fragment):
        parse_registries_conf(text, source="/etc/containers/registries.conf")


def test_longest_prefix_and_port_and_wildcards() -> None:
    entries = [
        RegistryEntry("example.com", "example.com", insecure=True),
        RegistryEntry("example.com/team", "example.com/team"),
        RegistryEntry("*.corp.example", "", insecure=True),
    ]
    assert find_registry(entries, "example.com/team/app") == entries[1]
    assert find_registry(entries, "example.com/teamx/app") == entries[0]
    assert find_registry(entries, "example.com:5000/app") == entries[0]  # containers/image quirk
    assert find_registry(entries, "example.community/app") is None
    assert find_registry(entries, "reg.corp.example/app") == entries[2]
    assert find_registry(entries, "corp.example/app") is None


def test_drop_ins_override_by_prefix_in_name_order(tmp_path: Path) -> None:
    tls = config(
        tmp_path,
        '[[registry]]\nlocation = "a.example"\ninsecure = true\n',
        {
            "10-a.conf": '[[registry]]\nlocation = "a.example"\ninsecure = false\n',
            "20-b.conf": '[[registry]]\nlocation = "b.example"\ninsecure = true\n',
            "ignored.txt": "not toml at all ===",
        },
    )
    assert not tls.is_insecure("a.example/x")
    assert tls.is_insecure("b.example/x")
    assert tls.tls_verify_for("b.example/x") is False
    assert tls.tls_verify_for("a.example/x") is None


def test_tls_verify_option_overrides(tmp_path: Path) -> None:
    text = '[[registry]]\nlocation = "a.example"\ninsecure = true\n'
    assert config(tmp_path, text, tls_verify=True).settings_for("a.example/x", "a.example").allow_http is False
    assert config(tmp_path, text, tls_verify=True).tls_verify_for("a.example/x") is True
    loose = config(tmp_path, "", tls_verify=False).settings_for("z.example/x", "z.example")
    assert (loose.verify, loose.allow_http) == (False, True)


def test_env_override_and_missing_explicit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "env.conf"
    conf.write_text('[[registry]]\nlocation = "env.example"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    tls = TLSConfig(registries_conf_dirs=[], certs_dirs=[])
    assert tls.is_insecure("env.example/a")
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "missing.conf"))
    with pytest.raises(RegistriesConfError, match=r"missing\.conf"):
        TLSConfig(registries_conf_dirs=[], certs_dirs=[])


def test_blocked(tmp_path: Path) -> None:
    tls = config(tmp_path, '[[registry]]\nlocation = "bad.example"\nblocked = true\n')
    assert tls.is_blocked("bad.example/x") and not tls.is_blocked("good.example/x")


def test_certs_d_cas_and_client_pair(tmp_path: Path) -> None:
    tls = config(tmp_path)
    ca = trustme.CA()
    host_dir = tmp_path / "certs.d" / "reg.example:5000"
    host_dir.mkdir()
    ca.cert_pem.write_to_path(str(host_dir / "ca.crt"))
    leaf = ca.issue_cert("client.example")
    leaf.cert_chain_pems[0].write_to_path(str(host_dir / "client.cert"))
    leaf.private_key_pem.write_to_path(str(host_dir / "client.key"))
    settings = tls.settings_for("reg.example:5000/app", "reg.example:5000")
    assert settings.ca_files == (str(host_dir / "ca.crt"),)
    assert settings.client_cert == (str(host_dir / "client.cert"), str(host_dir / "client.key"))
    assert settings.verify and not settings.allow_http
    context = settings.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert tls.settings_for("other.example/app", "other.example").ca_files == ()


def test_certs_d_key_without_cert_is_an_error(tmp_path: Path) -> None:
    tls = config(tmp_path)
    host_dir = tmp_path / "certs.d" / "reg.example"
    host_dir.mkdir()
    (host_dir / "ca.key").write_text("x")
    with pytest.raises(TLSConfigError, match=r"missing client certificate ca\.cert"):
        tls.settings_for("reg.example/app", "reg.example")


def test_bad_ca_file_is_a_config_error(tmp_path: Path) -> None:
    tls = config(tmp_path)
    host_dir = tmp_path / "certs.d" / "reg.example"
    host_dir.mkdir()
    (host_dir / "ca.crt").write_text("not a certificate")
    with pytest.raises(TLSConfigError, match="loading certificates"):
        tls.settings_for("reg.example/app", "reg.example").ssl_context()


def test_contexts_are_shared_until_a_certificate_file_changes(tmp_path: Path) -> None:
    """One context per settings for the process (the daemon's runs too); a rewritten CA file
    makes a new one, so a renewed certs.d entry is read on the next run."""
    tls = config(tmp_path)
    host_dir = tmp_path / "certs.d" / "reg.example"
    host_dir.mkdir()
    ca_file = host_dir / "ca.crt"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    settings = tls.settings_for("reg.example/app", "reg.example")
    first = settings.ssl_context()
    assert settings.ssl_context() is first
    assert config(tmp_path).settings_for("reg.example/app", "reg.example").ssl_context() is first
    trustme.CA().cert_pem.write_to_path(str(ca_file))  # a new CA, another size or mtime
    os.utime(ca_file, ns=(1, 1))
    renewed = settings.ssl_context()
    assert renewed is not first
    assert renewed.verify_mode == ssl.CERT_REQUIRED


def test_insecure_context_loads_no_cas_and_verifies_nothing(tmp_path: Path) -> None:
    tls = config(tmp_path, '[[registry]]\nlocation = "plain.example:5000"\ninsecure = true\n')
    settings = tls.settings_for("plain.example:5000/app", "plain.example:5000")
    assert not settings.verify and settings.allow_http
    context = settings.ssl_context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
    secure = config(tmp_path).settings_for("other.example/app", "other.example").ssl_context()
    assert secure.verify_mode == ssl.CERT_REQUIRED and secure.check_hostname


_names = st.sampled_from(["a.example", "a.example:5000", "*.example", "a.example/ns", "b", "", "http://x"])
_values = st.one_of(st.booleans(), st.text(max_size=5), st.integers())


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


_table = st.fixed_dictionaries(
    {}, optional={"location": _names, "prefix": _names, "insecure": _values, "blocked": _values}
)


@given(
    st.one_of(
        st.lists(_table, max_size=4).map(
            lambda tables: "".join(
                "[[registry]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in t.items()) for t in tables
            )
        ),
        st.lists(_names, max_size=3).map(lambda names: "[registries.insecure]\nregistries = " + repr(names) + "\n"),
        st.text(max_size=80),
    ),
    st.sampled_from(["a.example/x", "a.example:5000/x", "q.example/y", "b/c"]),
)
def test_parsing_never_crashes_with_anything_else(text: str, ref: str) -> None:
    try:
        entries = parse_registries_conf(text, source="/etc/containers/registries.conf")
    except RegistriesConfError as err:
        assert "registries.conf" in str(err)
        return
    found = find_registry(entries, ref)
    assert found is None or found in entries


MIRRORED = """
[[registry]]
prefix = "remap.test/team"
location = "primary.test:5000/mirrored/team"

[[registry.mirror]]
location = "mirror-a.test/team"
insecure = true

[[registry.mirror]]
location = "mirror-b.test/team"
pull-from-mirror = "digest-only"

[[registry.mirror]]
location = "mirror-c.test/team"
pull-from-mirror = "tag-only"
"""


def test_pull_sources_are_the_mirrors_for_this_kind_of_reference_then_the_rewritten_location():
    entries = parse_registries_conf(MIRRORED)
    assert pull_sources(entries, "remap.test/team/app", by_digest=False) == [
        "mirror-a.test/team/app", "mirror-c.test/team/app", "primary.test:5000/mirrored/team/app"]
    assert pull_sources(entries, "remap.test/team/app", by_digest=True) == [
        "mirror-a.test/team/app", "mirror-b.test/team/app", "primary.test:5000/mirrored/team/app"]
    # No entry: the name itself; a prefix that does not match at a path boundary is no match.
    assert pull_sources(entries, "remap.test/teamx/app", by_digest=False) == ["remap.test/teamx/app"]


def test_mirror_by_digest_only_skips_every_mirror_for_tags():
    entries = parse_registries_conf(
        '[[registry]]\nlocation = "quay.test"\nmirror-by-digest-only = true\n'
        '[[registry.mirror]]\nlocation = "cache.test"\n'
    )
    assert pull_sources(entries, "quay.test/app", by_digest=False) == ["quay.test/app"]
    assert pull_sources(entries, "quay.test/app", by_digest=True) == ["cache.test/app", "quay.test/app"]


def test_a_mirror_declared_insecure_is_insecure_and_the_others_are_not(tmp_path):
    conf = tmp_path / "registries.conf"
    conf.write_text(MIRRORED)
    tls = TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[])
    assert tls.is_insecure("mirror-a.test/team/app")
    assert not tls.is_insecure("mirror-b.test/team/app")
    assert not tls.is_insecure("primary.test:5000/mirrored/team/app")


def test_a_bad_pull_from_mirror_value_names_the_file():
    with pytest.raises(RegistriesConfError, match="pull-from-mirror"):
        parse_registries_conf('[[registry]]\nlocation = "a.test"\n[[registry.mirror]]\nlocation = "b.test"\n'
                              'pull-from-mirror = "sometimes"\n', source="x.conf")
