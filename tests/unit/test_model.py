"""Plain data: what it shows of itself."""

from __future__ import annotations

from autoupdated.model import Credentials


def test_credentials_never_print_their_secret():
    creds = Credentials("user", "s3cret-pass", "tok-123")
    for text in (repr(creds), str(creds), f"{creds}", f"{[creds]}"):
        assert "s3cret" not in text and "tok-123" not in text
