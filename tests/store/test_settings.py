"""The settings table (core/store/settings.py): shared choices, and a person's own theme."""

from __future__ import annotations

import pytest

from core.errors import InvalidValue
from core.store import THEMES, get_setting, open_db, set_setting, set_user_theme, user_theme


def test_settings_round_trip(tmp_path):
    db = open_db(tmp_path / "s.db")
    assert get_setting(db, "x", "default") == "default"
    set_setting(db, "x", "1")
    set_setting(db, "x", "2")
    assert get_setting(db, "x") == "2"


def test_each_user_keeps_their_own_theme(tmp_path):
    db = open_db(tmp_path / "s.db")
    assert user_theme(db, "alice") is None, "nothing chosen yet"
    set_user_theme(db, "alice", "dark")
    set_user_theme(db, "bob", "light")
    assert (user_theme(db, "alice"), user_theme(db, "bob")) == ("dark", "light")
    set_user_theme(db, "alice", "system")
    assert user_theme(db, "alice") == "system" and set(THEMES) == {"light", "dark", "system"}
    assert user_theme(db, "") is None


def test_a_bad_theme_is_refused_with_the_choices(tmp_path):
    db = open_db(tmp_path / "s.db")
    with pytest.raises(InvalidValue, match=r"'purple'.*light, dark, system"):
        set_user_theme(db, "alice", "purple")
    with pytest.raises(InvalidValue, match="named user"):
        set_user_theme(db, "", "dark")
    set_setting(db, "ui.theme.by.carol", "neon")
    assert user_theme(db, "carol") is None, "a stored value that is no theme is ignored"
