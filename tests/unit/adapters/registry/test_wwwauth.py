"""WWW-Authenticate parsing: RFC 7235 challenges, quoting, several challenges, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoupdated.adapters.registry.wwwauth import Challenge, WWWAuthenticateError, parse, parse_all


def test_distribution_bearer_challenge() -> None:
    header = 'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:app:pull"'
    assert parse(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example.com/token",
                "service": "registry.example.com",
                "scope": "repository:app:pull",
            },
        )
    ]


def test_basic_challenge_and_case_insensitive_names() -> None:
    (challenge,) = parse('BASIC Realm="Registry Realm"')
    assert challenge.scheme == "basic"
    assert challenge.realm == "Registry Realm"
    assert challenge.get("REALM") == "Registry Realm"


def test_several_challenges_in_one_header() -> None:
    header = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    first, second = parse(header)
    assert first.scheme == "newauth"
    assert first.params == {"realm": "apps", "type": "1", "title": 'Login to "apps"'}
    assert second == Challenge("basic", {"realm": "simple"})


def test_commas_and_equals_inside_quotes() -> None:
    (challenge,) = parse('Bearer realm="https://a.example/t?x=1,y=2", scope="repository:a:pull,push"')
    assert challenge.realm == "https://a.example/t?x=1,y=2"
    assert challenge.get("scope") == "repository:a:pull,push"


def test_unquoted_url_value_and_whitespace_around_equals() -> None:
    (challenge,) = parse("Bearer realm = https://auth.example/token , service=reg")
    assert challenge.params == {"realm": "https://auth.example/token", "service": "reg"}


def test_token68_and_bare_schemes() -> None:
    assert parse("Negotiate abc+/def==, Basic") == [
        Challenge("negotiate", {}, "abc+/def=="),
        Challenge("basic", {}),
    ]


def test_repeated_headers() -> None:
    challenges = parse_all(['Basic realm="a"', 'Bearer realm="https://t.example/token"'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]


def test_empty_header_has_no_challenges() -> None:
    assert parse("") == []
    assert parse(" , ,") == []


@pytest.mark.parametrize(
    "header",
    [
        'Bearer realm="unterminated',
        'Bearer realm="x" garbage',
        "=oops",
        'Bearer realm="a", realm="b"',
        'Bearer realm="x\\',
    ],
)
def test_malformed_headers_raise_the_module_error(header: str) -> None:
    with pytest.raises(WWWAuthenticateError) as info:
        parse(header)
    assert "malformed WWW-Authenticate header" in str(info.value)


@given(st.text(max_size=200))
def test_never_crashes_with_anything_else(header: str) -> None:
    try:
        challenges = parse(header)
    except WWWAuthenticateError:
        return
    for challenge in challenges:
        assert challenge.scheme == challenge.scheme.lower()
        assert all(name == name.lower() for name in challenge.params)


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!#$%&'*+^`|", min_size=1, max_size=12
)
_value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(
    st.lists(
        st.tuples(_token, st.dictionaries(_token.map(str.lower), _value, min_size=1, max_size=4)),
        min_size=1,
        max_size=3,
    )
)
def test_round_trip_of_generated_challenges(challenges: list[tuple[str, dict[str, str]]]) -> None:
    header = ", ".join(
        f"{scheme} " + ", ".join(f"{name}={_quote(value)}" for name, value in params.items())
        for scheme, params in challenges
    )
    parsed = parse(header)
    assert [(c.scheme, c.params) for c in parsed] == [(scheme.lower(), params) for scheme, params in challenges]
