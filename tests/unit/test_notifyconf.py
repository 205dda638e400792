"""[[notify]] and metrics keys in the configuration: strict, file:key errors, secrets masked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoupdated import config
from autoupdated.cli import main
from autoupdated.notifyconf import NotifyTarget, mask_url

SECRET = "s3cr3t-T0KEN-value"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTOUPDATED_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "autoupdated.toml"
    path.write_text(text)
    return path


def test_notify_entries_and_metrics_keys_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'metrics_listen = "127.0.0.1:9369"\nmetrics_textfile = "/var/lib/prometheus/node-exporter/autoupdated.prom"\n'
        f'[[notify]]\nurl = "json://u:{SECRET}@hooks.example:8080/x"\nevents = ["failed", "rolled_back"]\n'
        'containers = ["web*"]\n[[notify]]\nconfig = "/etc/autoupdated/apprise.yml"\n',
    )
    loaded = config.load(path)
    first, second = loaded.settings.notify
    assert first.events == ["failed", "rolled_back"] and first.wants("failed", "web1", "u") is True
    assert first.wants("failed", "db", "u") is False and first.wants("updated", "web1", "u") is False
    assert second.config == "/etc/autoupdated/apprise.yml" and "daemon" in second.events
    assert any("metrics_textfile" in w and "ReadWritePaths" in w for w in loaded.warnings) or os.geteuid() != 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[notify]]\nurl = "json://h/x"\nevnts = ["failed"]\n',
            "key 'notify[0]': unknown key 'evnts' in a [[notify]] entry; did you mean 'events'?",
        ),
        (
            '[[notify]]\nurl = "jsno://h/x"\n',
            "key 'notify[0].url': Apprise knows no scheme jsno:// (in jsno://***); did you mean json://?",
        ),
        ('[[notify]]\nevents = ["failed"]\n', "key 'notify[0]': a [[notify]] entry needs `url"),
        (
            '[[notify]]\nurl = "json://h/x"\nevents = ["fail"]\n',
            "key 'notify[0].events[0]': must be 'update_available', 'updated'",
        ),
        (
            '[[notify]]\nurl = "json://h/x"\nconfig = "apprise.yml"\n',
            "key 'notify[0].config': must be an absolute path",
        ),
        ('metrics_listen = ":9369"\n', "key 'metrics_listen': ':9369' has no host"),
        ("notify_retries = 99\n", "key 'notify_retries'"),
        ("notfy = []\n", "unknown key 'notfy'; did you mean 'notify'?"),
    ],
)
def test_mistakes_are_errors_naming_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert f"{path}: " in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        f'[[notify]]\nurl = "tgram://{SECRET}/123"\nbad_key = "json://u:{SECRET}@h/x"\n',
        f'[[notify]]\nurls = "json://u:{SECRET}@h/x"\n',
        f'[[notify]]\nurl = "nope://u:{SECRET}@h/x"\n',
        f'[[notify]]\nurl = "json://u:{SECRET}@h/x"\nevents = "failed"\n',
    ],
)
def test_errors_never_show_a_url_secret(tmp_path: Path, text: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(write(tmp_path, text))
    assert SECRET not in str(err.value)


def test_config_show_masks_urls_in_toml_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        f'[[notify]]\nurls = ["json://bot:{SECRET}@127.0.0.1:8080/hook/{SECRET}?token={SECRET}", '
        f'"tgram://{SECRET}/123456", "mailto://me:{SECRET}@mail.example?to=ops@example.com"]\n',
    )
    assert main(["config", "show", "--config", str(path)]) == 0
    assert main(["config", "show", "--config", str(path), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    print(out)
    assert SECRET not in out + err
    assert 'urls = ["json://127.0.0.1:8080/***", "tgram://***", "mailto://mail.example/***"]' in out
    shown = json.loads(out[out.index("{\n") :])
    assert shown["settings"]["notify"]["value"][0]["urls"][0] == "json://127.0.0.1:8080/***"


def test_a_target_never_prints_its_url() -> None:
    target = NotifyTarget(url=f"json://u:{SECRET}@h:1/x")
    assert SECRET not in repr(target) + str(target)
    assert SECRET in target.secrets()
    assert mask_url(f"discord://{SECRET}/{SECRET}") == "discord://***"
    assert mask_url("not a url") == "***"


def test_the_example_configuration_documents_every_new_key() -> None:
    text = (Path(__file__).resolve().parents[2] / "config" / "autoupdated.toml").read_text()
    for key in ("[[notify]]", "notify_timeout", "notify_retries", "metrics_listen", "metrics_textfile"):
        assert key in text, key
