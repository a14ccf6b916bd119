"""The trigger-kept counts of migration m006 (pred_counts with the histogram bin, label_counts,
row_counts, confusion_counts, hourly_counts) stay equal to counting the tables, through every write path: ingest (with failures and a retry), imported
labels, decisions, skips, undo, re-routing, a second model predicted and activated, a model's
predictions deleted — and the migration's backfill of an existing database."""

from __future__ import annotations

import pytest

from core import review
from core.intake import ingest, pending_count, predict_pending
from core.models import Classifier, register_model, set_active_model
from core.store import core_migrations, migration_set, open_db, write_tx
from tests.helpers import build_tiny_model, write_images

CLASSES = ("fibres", "particles", "powder")


def assert_counts_exact(db) -> None:
    pred = db.execute("SELECT model_id, pred, queue, done, SUM(n) FROM pred_counts GROUP BY 1, 2, 3, 4 "
                      "HAVING SUM(n) != 0 ORDER BY 1, 2, 3, 4").fetchall()
    truth = db.execute("SELECT model_id, pred, queue, done, COUNT(*) FROM predictions "
                       "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4").fetchall()
    assert pred == truth
    lab = db.execute("SELECT label, source, n FROM label_counts WHERE n != 0 ORDER BY 1, 2").fetchall()
    assert lab == db.execute("SELECT label, source, COUNT(*) FROM current_labels GROUP BY 1, 2 "
                             "ORDER BY 1, 2").fetchall()
    for table in ("images", "ingest_errors"):
        assert review.row_count(db, table) == db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    bins = db.execute("SELECT model_id, queue, bin, SUM(n) FROM pred_counts GROUP BY 1, 2, 3 "
                      "HAVING SUM(n) != 0 ORDER BY 1, 2, 3").fetchall()
    assert bins == db.execute("SELECT model_id, queue, MIN(CAST(p1 * 20 AS INTEGER), 19), COUNT(*) "
                              "FROM predictions GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()
    conf = db.execute("SELECT model_id, label, pred, n FROM confusion_counts WHERE n != 0 "
                      "ORDER BY 1, 2, 3").fetchall()
    assert conf == db.execute(
        "SELECT p.model_id, c.label, p.pred, COUNT(*) FROM current_labels c JOIN predictions p "
        "ON p.image_id = c.image_id WHERE c.source IN ('human', 'import') GROUP BY 1, 2, 3 "
        "ORDER BY 1, 2, 3").fetchall()
    hourly = db.execute("SELECT hour, reviewer, n FROM hourly_counts WHERE n != 0 ORDER BY 1, 2").fetchall()
    assert hourly == db.execute(
        "SELECT substr(e.created_at, 1, 13), e.reviewer, COUNT(*) FROM label_events e "
        "WHERE e.source = 'human' AND e.action IN ('accept', 'relabel', 'several', 'unusable') "
        "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id) "
        "GROUP BY 1, 2 ORDER BY 1, 2").fetchall()


def pending_oracle(db, model_id: int) -> int:
    return db.execute("SELECT COUNT(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM predictions p "
                      "WHERE p.image_id = i.id AND p.model_id = ?)", [model_id]).fetchone()[0]


def test_counts_stay_exact_through_every_write(tmp_path):
    db = open_db(tmp_path / "c.db")
    assert_counts_exact(db)
    m1 = register_model(db, build_tiny_model(tmp_path / "m1.onnx", CLASSES), activate=True)
    folder = tmp_path / "img"
    write_images(folder / "powder", n=6, seed=1)
    write_images(folder / "loose", n=14, seed=2)
    (folder / "loose" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    clf = Classifier(m1["path"])
    rep = ingest(db, [folder / "powder"], classifier=clf, model_id=m1["id"], labels_from_folders=True)
    assert rep.added == 6 and review.overview(db)["imported"] == 6
    rep = ingest(db, [folder / "loose"], classifier=clf, model_id=m1["id"])
    assert rep.added == 14 and len(rep.failed) == 1
    assert_counts_exact(db)
    assert review.row_count(db, "ingest_errors") == 1
    write_images(tmp_path / "fixed", n=1, seed=5)[0].replace(folder / "loose" / "broken.png")
    ingest(db, [folder / "loose"], classifier=clf, model_id=m1["id"])  # the retry clears it
    assert review.row_count(db, "ingest_errors") == 0
    assert_counts_exact(db)

    ids = [r[0] for r in db.execute("SELECT image_id FROM predictions WHERE done = 0 ORDER BY image_id")]
    review.decide(db, ids[0], "accept", reviewer="ann")
    review.decide(db, ids[1], "relabel", reviewer="ann", label="fibres")
    review.decide(db, ids[2], "several", reviewer="bob")
    review.decide(db, ids[3], "skip", reviewer="bob")
    review.decide(db, ids[1], "relabel", reviewer="bob", label="powder")  # relabel a labelled one
    assert_counts_exact(db)
    for who in ("ann", "ann", "bob"):
        review.undo_last(db, who)
        assert_counts_exact(db)

    before = review.queue_counts(db)
    review.set_thresholds(db, review.Thresholds(accept=0.0))
    after = review.reroute(db, m1["id"])  # routes everything to auto: auto labels added
    assert_counts_exact(db)
    assert after.get("uncertain", 0) == 0 and sum(after.values()) == sum(before.values())
    review.set_thresholds(db, review.Thresholds(accept=0.99))
    review.reroute(db, m1["id"])  # and revoked again
    assert_counts_exact(db)

    m2 = register_model(db, build_tiny_model(tmp_path / "m2.onnx", ("a", "b", "c", "d")))
    assert pending_count(db, m2["id"]) == 21 == pending_oracle(db, m2["id"])
    predict_pending(db, Classifier(m2["path"]), m2["id"])
    assert pending_count(db, m2["id"]) == 0 == pending_oracle(db, m2["id"])
    set_active_model(db, m2["id"])
    review.reroute(db, m2["id"])
    assert_counts_exact(db)
    assert review.overview(db)["predicted"] == 21
    with write_tx(db, "re-predicting"):  # a labelled image's top class and p1 change (predict --redo)
        iid = db.execute("SELECT p.image_id FROM predictions p JOIN current_labels c ON c.image_id = "
                         "p.image_id WHERE c.source = 'import' AND p.model_id = ? LIMIT 1", [m2["id"]]).fetchone()[0]
        db.execute("UPDATE predictions SET pred = 'zz', p1 = 0.01 WHERE image_id = ? AND model_id = ?",
                   [iid, m2["id"]])
    assert_counts_exact(db)
    with write_tx(db, "deleting a model's predictions"):  # what discarding a model does
        db.execute("DELETE FROM predictions WHERE model_id = ?", [m1["id"]])
    assert_counts_exact(db)
    assert review.overview(db, m1["id"])["predicted"] == 0
    with write_tx(db, "pruning history"):  # label_events is append-only in core; deletes still count
        undo = db.execute("SELECT id, undoes FROM label_events WHERE action = 'undo' AND source = 'human' "
                          "ORDER BY id LIMIT 1").fetchone()
        db.execute("DELETE FROM label_events WHERE id = ?", [undo[0]])  # the decision counts again
        assert_counts_exact(db)
        db.execute("DELETE FROM label_events WHERE id = ?", [undo[1]])
    assert_counts_exact(db)


def test_migration_backfills_an_existing_database(tmp_path):
    """A database from before m006 gets its counts from the rows already there."""
    path = tmp_path / "old.db"
    db = open_db(path, migrate=False)
    core_migrations.apply(db, stop_before="m006_counts")
    migration_set("semtriage.review").apply(db)  # the predictions columns ingest writes
    assert not db["pred_counts"].exists()
    m = register_model(db, build_tiny_model(tmp_path / "m.onnx", CLASSES), activate=True)
    ingest(db, [write_images(tmp_path / "img", n=9)[0].parent], classifier=Classifier(m["path"]),
           model_id=m["id"])
    iid, pred = db.execute("SELECT image_id, pred FROM predictions LIMIT 1").fetchone()
    # a decision as the code of that time wrote it (today's decide needs later columns)
    ev = db.execute("INSERT INTO label_events(image_id, label, action, source, reviewer, created_at) "
                    "VALUES (?, ?, 'accept', 'human', 'ann', '2026-01-01T00:00:00')", [iid, pred]).lastrowid
    db.execute("INSERT INTO current_labels(image_id, event_id, label, action, source, reviewer, updated_at) "
               "VALUES (?, ?, ?, 'accept', 'human', 'ann', '2026-01-01T00:00:00') ON CONFLICT(image_id) DO "
               "UPDATE SET event_id = excluded.event_id, label = excluded.label, action = 'accept', "
               "source = 'human', reviewer = 'ann'", [iid, ev, pred])
    db.execute("UPDATE predictions SET done = 1 WHERE image_id = ?", [iid])
    db.conn.commit()
    db.conn.close()
    db = open_db(path)  # applies m006
    assert_counts_exact(db)
    assert review.overview(db)["human"] == 1 and review.overview(db)["images"] == 9


@pytest.mark.parametrize("queue", ["uncertain", "mixed", "auto", "all"])
def test_queue_counts_match_counting(tmp_path, queue):
    db = open_db(tmp_path / "q.db")
    m = register_model(db, build_tiny_model(tmp_path / "m.onnx", CLASSES), activate=True)
    ingest(db, [write_images(tmp_path / "img", n=15)[0].parent], classifier=Classifier(m["path"]),
           model_id=m["id"])
    where = "" if queue == "all" else "AND queue = ?"
    truth = db.execute(f"SELECT COUNT(*) FROM predictions WHERE model_id = ? AND done = 0 {where}",
                       [m["id"]] + ([] if queue == "all" else [queue])).fetchone()[0]
    assert review.queue_left(db, m["id"], queue) == truth
    if queue != "all":
        assert review.queue_counts(db)[queue] == truth
