"""Access control: sign-in modes, the reviewer taken from the signed-in identity, and the admin
role — refused in core (``by=``) as well as hidden in the pages. The reverse-proxy header path
through a real browser is in tests/test_browser_multi.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import access, models, review, workflows
from core.config import Settings
from core.errors import Forbidden
from core.review import current_label
from core.store import open_db
from tests.helpers import CLASSES, app_db_copy, build_app_db, build_tiny_model, failures
from tests.ui.test_app import APP, texts

ROOT = Path(__file__).resolve().parents[1]
ALICE, BOSS = "alice@lab.example.org", "Boss@Lab.example.org"


# ---------------------------------------------------------------- settings and roles


def test_auth_settings_from_env():
    s = Settings.from_env({"SEMTRIAGE_AUTH": " Proxy ", "SEMTRIAGE_AUTH_HEADER": "X-Auth-Request-Email"})
    assert (s.auth, s.auth_header) == ("proxy", "X-Auth-Request-Email")
    assert (Settings.from_env({}).auth, Settings.from_env({}).auth_header) == ("none", "X-Forwarded-User")
    with pytest.raises(ValueError, match="SEMTRIAGE_AUTH='ldap'.*none, proxy, oidc"):
        Settings.from_env({"SEMTRIAGE_AUTH": "ldap"})
    with pytest.raises(ValueError, match="SEMTRIAGE_AUTH_HEADER"):
        Settings.from_env({"SEMTRIAGE_AUTH_HEADER": "X-User: admin"})


@pytest.mark.parametrize("auth,admins,name,admin", [
    ("none", "", "", True),  # a single-user laptop: today's behaviour
    ("none", "", "anyone", True),
    ("none", "boss", "anyone", False),
    ("none", "boss", "boss", True),
    ("proxy", "", "alice", False),  # sign-in on and no list: nobody (fail closed)
    ("oidc", "", "alice", False),
    ("oidc", f"x@y.org, {BOSS}", "boss@lab.example.org", True),  # e-mail case does not matter
    ("proxy", BOSS, ALICE, False),
    ("proxy", BOSS, "", False),
])
def test_who_is_admin(auth, admins, name, admin):
    s = Settings.from_env({"SEMTRIAGE_AUTH": auth, "SEMTRIAGE_ADMIN_USERS": admins})
    assert access.is_admin(name, s) is admin
    assert access.user(name, s) == access.User(name, admin)


# ---------------------------------------------------------------- core refuses non-admins


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_app_db(tmp_path_factory.mktemp("template"))


@pytest.fixture
def app_db(template, tmp_path, monkeypatch) -> Path:
    """A private copy of test_app's populated database, named by SEMTRIAGE_DB."""
    return app_db_copy(template, tmp_path, monkeypatch)


@pytest.fixture
def db(app_db):
    return open_db(app_db)


def test_core_refuses_threshold_changes_by_a_non_admin(db):
    model_id = models.active_model(db)["id"]
    before_t, before_q = review.get_thresholds(db), review.queue_counts(db)
    alice = access.User("alice", admin=False)
    with pytest.raises(Forbidden, match="'alice' may not change the routing thresholds.*SEMTRIAGE_ADMIN_USERS"):
        review.set_thresholds(db, review.Thresholds(accept=0.0), by=alice)
    with pytest.raises(Forbidden):
        review.clear_class_thresholds(db, CLASSES[0], by=alice)
    with pytest.raises(Forbidden, match="re-route"):
        review.reroute(db, model_id, by=alice)
    assert review.get_thresholds(db) == before_t and review.queue_counts(db) == before_q
    # an administrator may, and so may local use (the CLI passes no user)
    review.set_thresholds(db, review.Thresholds(accept=0.0), by=access.User("boss", admin=True))
    assert review.reroute(db, model_id, by=access.User("boss", admin=True)).get("uncertain", 0) == 0
    review.set_thresholds(db, review.Thresholds(accept=0.99))
    assert review.get_thresholds(db)[review.GLOBAL].accept == 0.99


def test_core_refuses_model_changes_by_a_non_admin(db, tmp_path):
    nobody = access.User("", admin=False)
    path = build_tiny_model(tmp_path / "other.onnx", ("a", "b"))
    with pytest.raises(Forbidden, match="Nobody signed in may not add a model"):
        models.register_model(db, path, activate=True, by=nobody)
    assert len(models.list_models(db)) == 1
    other = models.register_model(db, path)  # local use
    with pytest.raises(Forbidden, match="switch the active model"):
        models.set_active_model(db, other["id"], by=access.User("alice", admin=False))
    assert models.active_model(db)["id"] != other["id"]
    with pytest.raises(Forbidden, match="load the demo"):
        workflows.build_demo(tmp_path / "demo.db", by=nobody)
    assert not (tmp_path / "demo.db").exists()


ADMIN_ONLY = {"set_thresholds", "clear_class_thresholds", "reroute", "set_active_model",
              "register_model", "build_demo", "promote", "discard", "save_thresholds", "certify",
              "force_threshold", "revoke_certification", "find_issues", "export_labels",
              "set_overlap", "set_gold_rate", "mark_gold", "unmark_gold", "clear_overlap"}


def test_pages_pass_the_signed_in_user_to_every_admin_only_call():
    """A disabled or hidden button is not the only guard: each admin-only core call from a page
    (or a ui*.py helper module) names its user, so core refuses it for a non-admin."""
    missing = []
    files = sorted([*(ROOT / "pages").glob("**/*.py"), *(ROOT / "ui").glob("*.py")])
    assert len(files) > 20, "the pages and ui modules were found"
    for page in files:
        for node in ast.walk(ast.parse(page.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in ADMIN_ONLY and not any(k.arg == "by" for k in node.keywords):
                    missing.append(f"{page.name}:{node.lineno} {name}()")
    assert not missing, f"admin-only core calls without by=: {missing}"


# ---------------------------------------------------------------- the app with sign-in


def signed_in(monkeypatch, page: str | None, user: dict, admins: str = "") -> AppTest:
    """The app with Streamlit's OIDC sign-in, ``user`` as ``st.user`` would hold it."""
    monkeypatch.setenv("SEMTRIAGE_AUTH", "oidc")
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", admins)
    at = AppTest.from_file(APP, default_timeout=30)
    at.user = user
    at.run()
    if page:
        at.switch_page(page).run()
    assert not failures(at), [e.value for e in failures(at)]
    return at


@pytest.mark.parametrize("auth", ["oidc", "proxy"])
@pytest.mark.parametrize("page", [None, "pages/label/review.py", "pages/data/reference.py", "pages/setup/models.py"])
def test_without_sign_in_nothing_is_shown(app_db, monkeypatch, auth, page):
    monkeypatch.setenv("SEMTRIAGE_AUTH", auth)
    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": False}
    at.run()
    if page:
        at.switch_page(page).run()
    assert not failures(at), [e.value for e in failures(at)]
    assert [t.value for t in at.title] == [":material/lock: Sign-in required"]
    shown = texts(at)
    assert "Sign in" in shown or "sign in" in shown
    assert not at.metric and not at.dataframe and not at.text_input and not at.slider
    assert "Database" not in shown and "Model:" not in shown, "nothing about the data"
    assert not any(b.key and b.key.startswith(("rv_", "thr_", "mdl_")) for b in at.button)
    if auth == "oidc":
        assert [b.key for b in at.button] == ["auth_login"]


def test_signed_in_user_is_the_reviewer_and_cannot_be_edited(app_db, monkeypatch):
    at = signed_in(monkeypatch, "pages/label/review.py", {"is_logged_in": True, "email": ALICE, "name": "Alice"})
    assert not [t for t in at.text_input if t.key == "reviewer"], "no name box to edit"
    assert ALICE.replace(".", "\\.") in " ".join(m.value for m in at.sidebar.markdown)
    iid = at.session_state["review_current"]
    at.button(key=f"rv_accept_{iid}").click().run()
    assert not failures(at)
    assert current_label(open_db(app_db), iid)["reviewer"] == ALICE
    # the reviewer query parameter of the no-sign-in mode changes nothing
    at.query_params["reviewer"] = "mallory"
    at.run()
    nxt = at.session_state["review_current"]
    at.button(key=f"rv_unusable_{nxt}").click().run()
    assert current_label(open_db(app_db), nxt)["reviewer"] == ALICE


def test_grid_labels_carry_the_signed_in_user(app_db, monkeypatch):
    at = signed_in(monkeypatch, "pages/label/grid.py", {"is_logged_in": True, "email": ALICE})
    ids = [int(c.key.rsplit("_", 1)[1]) for c in at.checkbox if c.key and c.key.startswith("grid_odd_")]
    assert ids
    at.button(key="grid_confirm").click().run()
    db = open_db(app_db)
    assert {current_label(db, i)["reviewer"] for i in ids} == {ALICE}


def test_a_non_admin_cannot_change_thresholds_or_models(app_db, monkeypatch):
    at = signed_in(monkeypatch, "pages/setup/models.py", {"is_logged_in": True, "email": ALICE}, admins=BOSS)
    keys = {b.key for b in at.button}
    assert "thr_save" not in keys and "mdl_register" not in keys
    assert not any(k and k.startswith(("mdl_activate_", "mdl_predict_")) for k in keys)
    assert any("not an administrator" in w.value for w in at.warning)
    assert at.slider(key="thr_accept"), "the preview stays available to everyone"


def test_the_database_path_is_shown_to_administrators_only(app_db, monkeypatch):
    """Issue 18 (15): where the server keeps its database is for those who run it."""
    who = {"alice": {"is_logged_in": True, "email": ALICE}, "boss": {"is_logged_in": True, "email": BOSS}}
    for name, shown in (("alice", False), ("boss", True)):
        at = signed_in(monkeypatch, "pages/data/overview.py", who[name], admins=BOSS)
        side = " ".join(c.value for c in at.sidebar.caption).replace("\\", "")
        assert ("Database:" in side) is shown and (str(app_db) in side) is shown, (name, side)


def test_with_sign_in_and_no_admin_list_nobody_is_admin(app_db, monkeypatch):
    at = signed_in(monkeypatch, "pages/setup/models.py", {"is_logged_in": True, "email": BOSS})
    assert "thr_save" not in {b.key for b in at.button}
    assert any("nobody is" in w.value for w in at.warning)


def test_an_admin_can_change_thresholds(app_db, monkeypatch):
    db = open_db(app_db)
    before = review.queue_counts(db)
    at = signed_in(monkeypatch, "pages/setup/models.py", {"is_logged_in": True, "email": "boss@lab.example.org"},
                   admins=BOSS)
    # the model's state banner (provisional / certified) is for everyone; no refusal for an admin
    assert not [w for w in at.warning if w.icon != ":material/policy:"], [w.value for w in at.warning]
    at.slider(key="thr_accept").set_value(0.0).run()
    at.button(key="thr_save").click().run()
    assert not failures(at) and not at.error, [e.value for e in at.error]
    after = review.queue_counts(db)
    assert review.get_thresholds(db)[review.GLOBAL].accept == 0.0
    assert after["uncertain"] == 0 < before["uncertain"]


def test_oidc_without_a_provider_configured_says_so(app_db, monkeypatch):
    at = signed_in(monkeypatch, None, {"is_logged_in": False})
    at.button(key="auth_login").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    assert any("Sign-in is not set up" in e.value and "auth" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert not at.metric
