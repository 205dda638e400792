import pytest

from autoupdated.controls.model import ControlError, ControlsConfig, Hook, Layer, Mode, Section
from autoupdated.controls.resolve import parse_age, resolve
from autoupdated.controls.windows import parse_windows

BACKUP = Hook("backup", ("/bin/true",))
CONFIG = ControlsConfig(
    defaults=Layer(mode=Mode.AUTO, min_image_age=3600.0),
    sections=(
        Section("unit", "container-db*.service", Layer(restart_window=parse_windows("02:00..05:00"))),
        Section("container", "db*", Layer(mode=Mode.APPROVE, pre_update="backup")),
    ),
    hooks={"backup": BACKUP},
)


def test_top_level_then_unit_then_container_sections_then_labels():
    c = resolve(CONFIG, "db1", "container-db1.service", {})
    assert c.mode is Mode.APPROVE and c.min_image_age == 3600 and c.pre_update == BACKUP
    assert [str(w) for w in c.restart_window] == ["02:00..05:00"]
    c = resolve(CONFIG, "db1", "container-db1.service", {"io.autoupdated.mode": "notify"})
    assert c.mode is Mode.NOTIFY, "the label wins"
    assert resolve(CONFIG, "web", "container-web.service", {}).mode is Mode.AUTO


def test_labels_set_every_control():
    labels = {
        "io.autoupdated.restart_window": "Sat,Sun 02:00..05:00; 23:00..23:30",
        "io.autoupdated.min_image_age": "2d",
        "io.autoupdated.post_update": "backup",
    }
    c = resolve(CONFIG, "web", "u.service", labels)
    assert len(c.restart_window) == 2 and c.min_image_age == 2 * 86400 and c.post_update == BACKUP


def test_a_label_naming_an_unknown_hook_is_refused_and_names_the_container_and_label():
    with pytest.raises(ControlError) as err:
        resolve(CONFIG, "web", "u.service", {"io.autoupdated.pre_update": "rm-rf"})
    text = str(err.value)
    assert "container web" in text and "io.autoupdated.pre_update='rm-rf'" in text and "not run" in text


@pytest.mark.parametrize(
    ("label", "value", "says"),
    [
        ("io.autoupdated.mode", "yolo", "use auto, notify or approve"),
        ("io.autoupdated.min_image_age", "soon", "not a duration"),
        ("io.autoupdated.restart_window", "night", "not a window"),
        ("io.autoupdated.typo", "x", "unknown control"),
    ],
)
def test_a_bad_label_names_the_container_and_the_label(label, value, says):
    with pytest.raises(ControlError, match=says) as err:
        resolve(CONFIG, "web", "u.service", {label: value})
    assert f"container web: label {label}" in str(err.value)


def test_ages():
    assert parse_age("90") == 90 and parse_age("30m") == 1800 and parse_age("24h") == 86400
