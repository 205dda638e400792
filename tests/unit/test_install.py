"""`autoupdated install` (into a scratch root) and the files it ships as package data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autoupdated.adapters import journal
from autoupdated.cli import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {
    "autoupdated/data/autoupdated.service": "systemd/autoupdated.service",
    "autoupdated/data/user/autoupdated.service": "systemd/user/autoupdated.service",
    "autoupdated/data/autoupdated.catalog": "systemd/autoupdated.catalog",
    "autoupdated/data/autoupdated.toml": "config/autoupdated.toml",
}


@pytest.mark.parametrize(("packaged", "source"), sorted(SHIPPED.items()))
def test_package_data_is_the_same_as_the_repositorys_files(packaged: str, source: str) -> None:
    assert (REPO / packaged).read_text() == (REPO / source).read_text(), f"copy {source} to {packaged}"


def test_the_catalog_explains_every_message_id() -> None:
    catalog = (REPO / "systemd/autoupdated.catalog").read_text()
    ids = {value for name, value in vars(journal).items() if name.startswith("MESSAGE_ID_")}
    assert ids == set(re.findall(r"^-- ([0-9a-f]{32})$", catalog, re.M))


def test_install_writes_the_files_and_never_overwrites_a_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", "--root", str(tmp_path), "--dry-run"]) == 0
    assert not any(tmp_path.iterdir()), "--dry-run writes nothing"
    assert main(["install", "--root", str(tmp_path)]) == 0
    config = tmp_path / "etc/autoupdated.toml"
    assert config.read_text() == (REPO / "config/autoupdated.toml").read_text()
    assert (tmp_path / "usr/local/lib/systemd/catalog/autoupdated.catalog").exists()
    assert "ExecStart=" in (tmp_path / "etc/systemd/system/autoupdated.service").read_text()
    config.write_text('schedule = "weekly"\n')
    capsys.readouterr()
    assert main(["install", "--root", str(tmp_path)]) == 0
    assert config.read_text() == 'schedule = "weekly"\n'
    assert f"{config} (exists, left alone)" in capsys.readouterr().out


def test_user_install_writes_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["install", "--user", "--root", str(tmp_path)]) == 0
    home = tmp_path / str(tmp_path / "home").lstrip("/")
    assert (home / ".config/systemd/user/autoupdated.service").exists()
    assert (home / ".config/autoupdated/autoupdated.toml").exists()
