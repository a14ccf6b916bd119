"""The core tables, created and changed only by the numbered migrations of the core set
(``semtriage``), applied at start-up by :func:`core.store.open_db`. Other packages add their own
sets (:func:`core.store.migration_set`).

Tables
------
images          one row per distinct image (by SHA-256); thumbnail, SEM metadata, pixel size
files           every path ever seen, pointing at its image (duplicates share an image)
ingest_errors   the latest failure per path, with the reason in words
models          registered ONNX models (version, class names, card); one is active
predictions     per (image, model): full probability vector, top-2, margin, entropy,
                queue and reason; ``done`` = 1 once a human/import label exists
label_events    append-only history of every decision (accept, relabel, several, ...)
current_labels  the label derived from the history, maintained in the same transaction
claims          who is reviewing which image until when
skips           images a reviewer skipped (they come back when the queue is empty)
thresholds      routing thresholds, global (class '*') and per class
settings        key/value
image_hashes    cached 64-bit difference hash per image (near-copy grouping, core/groups.py)
model_images    per retrained model: the labelled images it trained on / held out
pred_counts, label_counts, row_counts, confusion_counts, hourly_counts: counts kept
                exact by triggers for the Overview and the queues (migration m006)
label_issues    likely mislabelled reference images (core/label_issues.py) and their review
"""


from __future__ import annotations

from sqlite_utils import Database

from core.store.migrations import migration_set

HUMAN_SOURCES = ("human", "import")
"""Labels people made (a reviewer's decision, or an imported folder label): the ground truth
that trains, certifies and tests models. Auto-accepted labels are the model's own guesses."""

core_migrations = migration_set("semtriage")


@core_migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            bit_depth INTEGER NOT NULL,
            raw_dtype TEXT NOT NULL,
            pages INTEGER NOT NULL DEFAULT 1,
            instrument TEXT,
            pixel_size_m REAL,
            pixel_size_source TEXT,
            databar_px INTEGER NOT NULL DEFAULT 0,
            databar_source TEXT NOT NULL DEFAULT 'none',
            metadata TEXT NOT NULL DEFAULT '{}',
            warnings TEXT NOT NULL DEFAULT '[]',
            thumb BLOB,
            group_key TEXT,
            added_at TEXT NOT NULL
        );
        CREATE INDEX idx_images_path ON images(path);
        CREATE TABLE files (
            path TEXT PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            size_bytes INTEGER NOT NULL,
            mtime REAL NOT NULL,
            seen_at TEXT NOT NULL
        );
        CREATE INDEX idx_files_image ON files(image_id);
        CREATE TABLE ingest_errors (
            path TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            version TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            class_names TEXT NOT NULL,
            info TEXT NOT NULL DEFAULT '{}',
            card TEXT,
            added_at TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE predictions (
            image_id INTEGER NOT NULL REFERENCES images(id),
            model_id INTEGER NOT NULL REFERENCES models(id),
            pred TEXT NOT NULL,
            p1 REAL NOT NULL,
            second TEXT,
            p2 REAL NOT NULL,
            margin REAL NOT NULL,
            entropy REAL NOT NULL,
            probs TEXT NOT NULL,
            queue TEXT NOT NULL CHECK (queue IN ('auto', 'uncertain', 'mixed')),
            reason TEXT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            rnd INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (image_id, model_id)
        );
        CREATE INDEX idx_pred_queue ON predictions(model_id, queue, done, margin);
        CREATE INDEX idx_pred_all ON predictions(model_id, done, margin);
        CREATE INDEX idx_pred_rnd ON predictions(model_id, queue, done, rnd);
        CREATE TABLE label_events (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            label TEXT,
            action TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('human', 'auto', 'import')),
            reviewer TEXT NOT NULL,
            model_id INTEGER REFERENCES models(id),
            model_version TEXT,
            prob REAL,
            undoes INTEGER REFERENCES label_events(id),
            note TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX idx_events_image ON label_events(image_id, id);
        CREATE INDEX idx_events_reviewer ON label_events(reviewer, id);
        CREATE INDEX idx_events_undoes ON label_events(undoes);
        CREATE TABLE current_labels (
            image_id INTEGER PRIMARY KEY REFERENCES images(id),
            label TEXT NOT NULL,
            action TEXT NOT NULL,
            source TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            event_id INTEGER NOT NULL REFERENCES label_events(id),
            model_version TEXT,
            prob REAL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_current_label ON current_labels(label, source);
        CREATE INDEX idx_current_source ON current_labels(source, updated_at);
        CREATE TABLE claims (
            image_id INTEGER PRIMARY KEY REFERENCES images(id),
            reviewer TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE TABLE skips (
            image_id INTEGER NOT NULL REFERENCES images(id),
            reviewer TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (image_id, reviewer)
        );
        CREATE TABLE thresholds (
            class TEXT PRIMARY KEY,
            accept REAL NOT NULL,
            mixed_margin REAL NOT NULL,
            mixed_mass REAL NOT NULL,
            cooccur REAL NOT NULL
        );
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """
    )


@core_migrations()
def m002_scale_indexes(db: Database) -> None:
    """Indexes found missing by ``bench/scale.py`` at a million images (EXPLAIN QUERY PLAN
    showed full scans plus sorts of the whole queue / table):

    * review orders ``confidence`` and ``entropy`` per queue (``margin`` and ``random`` had
      theirs); the confidence one also covers the confidence histogram;
    * per-class work: counts per predicted class, the grid's lowest-confidence-first page of one
      class, and the routing preview / auto-error estimate (covering: pred, p1, p2, second);
    * the reference set, newest label first;
    * human decisions in a time window (labels per hour), which must not scan years of events.

    On an existing database this builds the indexes once (tens of seconds at a million images).
    """
    # one statement at a time: executescript() would commit the migration's transaction
    for sql in (
        "CREATE INDEX idx_pred_conf ON predictions(model_id, queue, done, p1)",
        "CREATE INDEX idx_pred_entropy ON predictions(model_id, queue, done, entropy)",
        "CREATE INDEX idx_pred_class ON predictions(model_id, pred, done, p1, queue, p2, second)",
        "CREATE INDEX idx_current_updated ON current_labels(updated_at)",
        "CREATE INDEX idx_events_created ON label_events(source, created_at, action, reviewer)",
    ):
        db.execute(sql)


@core_migrations()
def m003_image_hashes(db: Database) -> None:
    """A cache of each image's 64-bit difference hash (core/groups.py, from the thumbnail;
    stored as a signed int64), for grouping near-copies in leak-free held-out splits."""
    db.execute(
        "CREATE TABLE image_hashes ("
        "image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, "
        "dhash INTEGER)"
    )


@core_migrations()
def m004_model_images(db: Database) -> None:
    """Which labelled images a retrained model (core/retrain.py) trained on and which it held
    out: comparisons and threshold recommendations use only images a model never trained on."""
    db.execute(
        "CREATE TABLE model_images ("
        "model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE, "
        "image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE, "
        "role TEXT NOT NULL CHECK (role IN ('train', 'holdout')), "
        "PRIMARY KEY (model_id, image_id))"
    )
    db.execute("CREATE INDEX idx_model_images_image ON model_images(image_id)")


@core_migrations()
def m005_label_issues(db: Database) -> None:
    """Likely mislabelled reference images found by ``core/label_issues.py`` (confident
    learning on out-of-fold predictions): the label given, the one suggested, the label-quality
    score (out-of-fold probability of the given label; low = likely wrong), the run that found
    it, and what a reviewer did about it. One row per image: the latest finding."""
    db.execute(
        "CREATE TABLE label_issues ("
        "image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, "
        "given TEXT NOT NULL, suggested TEXT NOT NULL, "
        "score REAL NOT NULL, suggested_p REAL NOT NULL, rank INTEGER NOT NULL, "
        "run_at TEXT NOT NULL, "
        "status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'kept', 'relabelled')), "
        "resolved_by TEXT, resolved_at TEXT)"
    )
    db.execute("CREATE INDEX idx_label_issues_open ON label_issues(status, rank)")


@core_migrations()
def m006_counts(db: Database) -> None:
    """Counts kept by triggers, so that the Overview page, the Review page's "N left" and the
    queue sizes read a few small rows instead of counting a million (``bench/scale.py``):

    * ``pred_counts``      predictions per (model, predicted class, queue, done, p1 bin), the
                           bin as the Overview histogram has it: ``MIN(CAST(p1 * 20 AS
                           INTEGER), 19)``;
    * ``label_counts``     current labels per (label, source);
    * ``row_counts``       rows of ``images`` and ``ingest_errors``;
    * ``confusion_counts`` per model: human and imported current labels against the model's
                           top-1 class, (model, label, pred);
    * ``hourly_counts``    human decisions (accept, relabel, several, unusable; not undone) per
                           (hour of ``created_at``, reviewer).

    Every INSERT / UPDATE / DELETE of the counted tables adjusts them in the same transaction
    (an UPSERT that updates fires the update trigger), so they stay exact
    (tests/test_counts.py); ``label_events`` is append-only (insert and delete are handled).
    Beware ``INSERT OR REPLACE`` on a counted table: SQLite deletes the old row without firing
    delete triggers (unless ``recursive_triggers``); use ``INSERT … ON CONFLICT DO UPDATE`` as
    core does. Rows whose count fell to 0 stay; readers skip them. Backfilled from the tables.
    """
    up = "ON CONFLICT DO UPDATE SET n = n + 1"
    b = "MIN(CAST({0}.p1 * 20 AS INTEGER), 19)"
    pk = "model_id = {0}.model_id AND pred = {0}.pred AND queue = {0}.queue AND done = {0}.done AND bin = " + b
    lk = "label = {0}.label AND source = {0}.source"
    people = "(" + ", ".join(f"'{s}'" for s in HUMAN_SOURCES) + ")"
    decisions = "('accept', 'relabel', 'several', 'unusable')"
    # confusion pairs: (the label of a current human/import label row, each prediction of its image)
    pairs_of_label = ("SELECT p.model_id, {0}.label, p.pred FROM predictions p "
                      f"WHERE p.image_id = {{0}}.image_id AND {{0}}.source IN {people}")
    pairs_of_pred = ("SELECT {0}.model_id, c.label, {0}.pred FROM current_labels c "
                     f"WHERE c.image_id = {{0}}.image_id AND c.source IN {people}")
    def one(pairs: str) -> str:  # the pairs with a count of 1 each, to insert
        return pairs.replace(" FROM ", ", 1 FROM ", 1)

    hour_of_target = (f"SELECT substr(e.created_at, 1, 13), e.reviewer FROM label_events e WHERE "
                      f"e.id = {{0}}.undoes AND e.source = 'human' AND e.action IN {decisions}")
    for sql in (
        (
            "CREATE TABLE pred_counts (model_id INTEGER NOT NULL, pred TEXT NOT NULL, "
            "queue TEXT NOT NULL, done INTEGER NOT NULL, bin INTEGER NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (model_id, pred, queue, done, bin)) WITHOUT ROWID"
        ),
        (
            "CREATE TABLE label_counts (label TEXT NOT NULL, source TEXT NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (label, source)) WITHOUT ROWID"
        ),
        "CREATE TABLE row_counts (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
        (
            "CREATE TABLE confusion_counts (model_id INTEGER NOT NULL, label TEXT NOT NULL, "
            "pred TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (model_id, label, pred)) WITHOUT ROWID"
        ),
        (
            "CREATE TABLE hourly_counts (hour TEXT NOT NULL, reviewer TEXT NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (hour, reviewer)) WITHOUT ROWID"
        ),
        # backfill
        (
            f"INSERT INTO pred_counts SELECT model_id, pred, queue, done, {b.format('predictions')}, "
            "COUNT(*) FROM predictions GROUP BY 1, 2, 3, 4, 5"
        ),
        "INSERT INTO label_counts SELECT label, source, COUNT(*) FROM current_labels GROUP BY 1, 2",
        "INSERT INTO row_counts SELECT 'images', COUNT(*) FROM images",
        "INSERT INTO row_counts SELECT 'ingest_errors', COUNT(*) FROM ingest_errors",
        (
            "INSERT INTO confusion_counts SELECT p.model_id, c.label, p.pred, COUNT(*) FROM current_labels c "
            f"JOIN predictions p ON p.image_id = c.image_id WHERE c.source IN {people} GROUP BY 1, 2, 3"
        ),
        (
            "INSERT INTO hourly_counts SELECT substr(e.created_at, 1, 13), e.reviewer, COUNT(*) "
            f"FROM label_events e WHERE e.source = 'human' AND e.action IN {decisions} "
            "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id) GROUP BY 1, 2"
        ),
        # predictions: pred_counts and confusion_counts
        (
            "CREATE TRIGGER pred_counts_ins AFTER INSERT ON predictions BEGIN "
            f"INSERT INTO pred_counts VALUES (NEW.model_id, NEW.pred, NEW.queue, NEW.done, {b.format('NEW')}, 1) {up}; "
            f"INSERT INTO confusion_counts {one(pairs_of_pred).format('NEW')} {up}; END"
        ),
        (
            "CREATE TRIGGER pred_counts_del AFTER DELETE ON predictions BEGIN "
            f"UPDATE pred_counts SET n = n - 1 WHERE {pk.format('OLD')}; "
            f"UPDATE confusion_counts SET n = n - 1 WHERE (model_id, label, pred) IN ({pairs_of_pred.format('OLD')}); END"
        ),
        (
            "CREATE TRIGGER pred_counts_upd AFTER UPDATE OF model_id, pred, queue, done, p1 ON predictions "
            "WHEN OLD.model_id IS NOT NEW.model_id OR OLD.pred IS NOT NEW.pred OR OLD.queue IS NOT NEW.queue "
            f"OR OLD.done IS NOT NEW.done OR {b.format('OLD')} IS NOT {b.format('NEW')} BEGIN "
            f"UPDATE pred_counts SET n = n - 1 WHERE {pk.format('OLD')}; "
            f"INSERT INTO pred_counts VALUES (NEW.model_id, NEW.pred, NEW.queue, NEW.done, {b.format('NEW')}, 1) {up}; END"
        ),
        (
            "CREATE TRIGGER confusion_pred_upd AFTER UPDATE OF model_id, pred ON predictions "
            "WHEN OLD.model_id IS NOT NEW.model_id OR OLD.pred IS NOT NEW.pred BEGIN "
            f"UPDATE confusion_counts SET n = n - 1 WHERE (model_id, label, pred) IN ({pairs_of_pred.format('OLD')}); "
            f"INSERT INTO confusion_counts {one(pairs_of_pred).format('NEW')} {up}; END"
        ),
        # current labels: label_counts and confusion_counts
        (
            "CREATE TRIGGER label_counts_ins AFTER INSERT ON current_labels BEGIN "
            f"INSERT INTO label_counts VALUES (NEW.label, NEW.source, 1) {up}; "
            f"INSERT INTO confusion_counts {one(pairs_of_label).format('NEW')} {up}; END"
        ),
        (
            "CREATE TRIGGER label_counts_del AFTER DELETE ON current_labels BEGIN "
            f"UPDATE label_counts SET n = n - 1 WHERE {lk.format('OLD')}; "
            f"UPDATE confusion_counts SET n = n - 1 WHERE (model_id, label, pred) IN ({pairs_of_label.format('OLD')}); END"
        ),
        (
            "CREATE TRIGGER label_counts_upd AFTER UPDATE OF label, source ON current_labels "
            "WHEN OLD.label IS NOT NEW.label OR OLD.source IS NOT NEW.source BEGIN "
            f"UPDATE label_counts SET n = n - 1 WHERE {lk.format('OLD')}; "
            f"INSERT INTO label_counts VALUES (NEW.label, NEW.source, 1) {up}; "
            f"UPDATE confusion_counts SET n = n - 1 WHERE (model_id, label, pred) IN ({pairs_of_label.format('OLD')}); "
            f"INSERT INTO confusion_counts {one(pairs_of_label).format('NEW')} {up}; END"
        ),
        # the label history (append-only): hourly_counts
        (
            f"CREATE TRIGGER hourly_ins AFTER INSERT ON label_events "
            f"WHEN NEW.source = 'human' AND NEW.action IN {decisions} BEGIN "
            f"INSERT INTO hourly_counts VALUES (substr(NEW.created_at, 1, 13), NEW.reviewer, 1) {up}; END"
        ),
        (
            "CREATE TRIGGER hourly_undo AFTER INSERT ON label_events WHEN NEW.undoes IS NOT NULL BEGIN "
            f"UPDATE hourly_counts SET n = n - 1 WHERE (hour, reviewer) IN ({hour_of_target.format('NEW')}); END"
        ),
        (
            f"CREATE TRIGGER hourly_del AFTER DELETE ON label_events "
            f"WHEN OLD.source = 'human' AND OLD.action IN {decisions} "
            "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = OLD.id) BEGIN "
            "UPDATE hourly_counts SET n = n - 1 WHERE hour = substr(OLD.created_at, 1, 13) "
            "AND reviewer = OLD.reviewer; END"
        ),
        (
            "CREATE TRIGGER hourly_undo_del AFTER DELETE ON label_events WHEN OLD.undoes IS NOT NULL BEGIN "
            f"INSERT INTO hourly_counts {one(hour_of_target).format('OLD')} {up}; END"
        ),
        # images, ingest errors: row_counts
        *(
            f"CREATE TRIGGER {t}_count_{op} AFTER {ev} ON {t} BEGIN "
            f"UPDATE row_counts SET n = n {sign} 1 WHERE tbl = '{t}'; END"
            for t in ("images", "ingest_errors")
            for op, ev, sign in (("ins", "INSERT", "+"), ("del", "DELETE", "-"))
        ),
    ):
        db.execute(sql)


@core_migrations()
def m007_label_classes_context(db: Database) -> None:
    """What a decision knew and said beyond its label.

    ``classes``: for a ``several`` decision, the classes the reviewer saw in the image (a JSON
    list), so a mixed image keeps its categories (exports, retraining, the mixed-queue bench).
    ``context``: ``'blind'`` when the reviewer decided with the model's answer hidden (the blind
    spot-check); ``'auto'`` when a reviewer confirmed or corrected an auto-accepted label while
    seeing it — such one-key confirmations are not independent evidence of the auto-accept error
    rate (core.review.stats.auto_error_estimate leaves them out); NULL otherwise.
    """
    for table in ("label_events", "current_labels"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN classes TEXT")
        db.execute(f"ALTER TABLE {table} ADD COLUMN context TEXT")
