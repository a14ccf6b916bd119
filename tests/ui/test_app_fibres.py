"""The Fibres page through AppTest: it renders on an empty database and on one holding real
fibre images, shows both methods' numbers, stores a measurement, and compares folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import fibres, synth
from core.config import Settings
from core.intake import ingest
from core.store import open_db
from core.synth import save_image
from tests.helpers import failures

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/data/fibres.py"


def start(reviewer: str = "alice") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["reviewer"] = reviewer
    at.run()
    assert not failures(at), failures(at)
    at.switch_page(PAGE).run()
    assert not failures(at), failures(at)
    return at


@pytest.fixture
def fibre_db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data" / "fib.db"
    monkeypatch.setenv("SEMTRIAGE_DB", str(path))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(tmp_path))
    for folder, spread in (("aligned", 4.0), ("random", float("inf"))):
        for seed in range(2):
            img, t = synth.generate_wires(seed, 160, kind="fibres", databar=False, populations=[
                {"angle_deg": 50.0, "spread_deg": spread, "weight": 1.0}])
            (tmp_path / folder).mkdir(exist_ok=True)
            save_image(img, tmp_path / folder / f"mat_{seed}.tif", t["pixel_size_m"])
    db = open_db(path)
    ingest(db, [tmp_path / "aligned", tmp_path / "random"], classifier=None,
           settings=Settings.from_env())
    return path


def test_page_renders_on_an_empty_database(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMTRIAGE_DB", str(tmp_path / "data" / "empty.db"))
    at = start()
    assert any("No images yet" in i.value for i in at.info)


def test_one_image_shows_numbers_of_both_methods_and_stores_them(fibre_db):
    at = start()
    table = next(d.value for d in at.dataframe if "gradient" in d.value.columns)
    assert "gradient" in table.columns
    assert table.loc["status", "gradient"] == "ok"
    assert float(table.loc["order parameter S", "gradient"]) > -1
    if fibres.FIBRE_MODEL.is_file():
        assert table.loc["status", "learned"] == "ok"
    at.button(key="fib_store").click().run()
    assert not failures(at), failures(at)
    rows = fibres.fibre_results(open_db(fibre_db))
    assert rows and rows[0]["status"] == "ok"


def test_folder_comparison_ranks_the_aligned_folder_first(fibre_db):
    db = open_db(fibre_db)
    fibres.measure_images(db, fibres.select_images(db, all_images=True))
    at = start()
    groups = next(d.value for d in at.dataframe if "folder" in d.value.columns)
    assert len(groups) == 2
    s = dict(zip(groups["folder"].map(lambda f: Path(f).name), groups["S mean"], strict=True))
    assert s["aligned"] > s["random"] + 0.3, s
    assert np.isfinite(groups["D50 mean"]).all()
