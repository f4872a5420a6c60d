"""Settings read from the environment and from `forum.toml`: switches, and one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from forum.config import ConfigError, load_settings


def _environ(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"FORUM_DATA_DIR": str(tmp_path), "FORUM_SECRET_KEY": "x" * 32, **values}


@pytest.mark.parametrize(("text", "on"), [("1", True), ("true", True), ("Yes", True), ("on", True),
                                          ("0", False), ("false", False), ("no", False), ("", False)])  # fmt: skip
def test_switches_read_the_usual_spellings_from_the_environment(tmp_path: Path, text: str, on: bool) -> None:
    settings = load_settings(_environ(tmp_path, FORUM_FEDERATION_AUTHORIZED_FETCH=text))
    assert settings.federation_authorized_fetch is on


@pytest.mark.parametrize("line", ["federation_authorized_fetch = true", "FORUM_FEDERATION_AUTHORIZED_FETCH = true",
                                  'federation_authorized_fetch = "1"', "federation_authorized_fetch = 1"])  # fmt: skip
def test_a_switch_written_in_forum_toml_is_on(tmp_path: Path, line: str) -> None:
    (tmp_path / "forum.toml").write_text(f"{line}\nfederation_allow_private = false\n")
    settings = load_settings(_environ(tmp_path))
    assert settings.federation_authorized_fetch is True and settings.federation_allow_private is False


def test_the_environment_wins_over_forum_toml(tmp_path: Path) -> None:
    (tmp_path / "forum.toml").write_text("federation_authorized_fetch = true\n")
    assert load_settings(_environ(tmp_path, FORUM_FEDERATION_AUTHORIZED_FETCH="0")).federation_authorized_fetch is False


def test_a_misspelt_switch_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FORUM_FEDERATION_ALLOW_PRIVATE must be 1 or 0"):
        load_settings(_environ(tmp_path, FORUM_FEDERATION_ALLOW_PRIVATE="maybe"))
