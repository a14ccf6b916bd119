"""The agreement tables: migration set ``semtriage.agreement`` (applied by
:func:`core.store.open_db` after the core set). The label history itself stays in the core
``label_events`` table: every overlap rating and every adjudication is an ordinary label event
there; these tables only say which events are what.

Tables
------
overlap_rules    share of images shown to more reviewers: scope ``*`` (every image),
                 ``queue:<q>`` or ``class:<c>`` (the first reviewer's label), rate in [0, 1],
                 how many reviewers in all
overlap_items    images chosen for overlap: the first decision that chose it, by whom, how many
                 reviewers it needs, under which scope
assignments      which reviewer was handed which image as an overlap or gold probe (at most
                 once per reviewer and image: UNIQUE)
gold_images      images an administrator marked with a known answer (``active`` = 0: unmarked)
gold_answers     append-only answers of reviewers to gold probes (an undo is a new row
                 pointing at the answer it cancels)
adjudications    the label event that settled a disagreement, by whom
"""

from __future__ import annotations

from sqlite_utils import Database

from core.store import migration_set

migrations = migration_set("semtriage.agreement")


@migrations()
def m001_agreement(db: Database) -> None:
    for sql in (
        ("CREATE TABLE overlap_rules (scope TEXT PRIMARY KEY, "
        "rate REAL NOT NULL CHECK (rate >= 0 AND rate <= 1), "
        "reviewers INTEGER NOT NULL CHECK (reviewers >= 2 AND reviewers <= 10))"),
        ("CREATE TABLE overlap_items (image_id INTEGER PRIMARY KEY REFERENCES images(id), "
        "first_event_id INTEGER NOT NULL REFERENCES label_events(id), first_reviewer TEXT NOT NULL, "
        "needed INTEGER NOT NULL, scope TEXT NOT NULL, selected_at TEXT NOT NULL)"),
        ("CREATE TABLE assignments (id INTEGER PRIMARY KEY, "
        "image_id INTEGER NOT NULL REFERENCES images(id), reviewer TEXT NOT NULL, "
        "kind TEXT NOT NULL CHECK (kind IN ('overlap', 'gold')), assigned_at TEXT NOT NULL, "
        "UNIQUE (image_id, reviewer))"),
        "CREATE INDEX idx_assign_reviewer ON assignments(reviewer, kind, image_id)",
        ("CREATE TABLE gold_images (image_id INTEGER PRIMARY KEY REFERENCES images(id), "
        "label TEXT NOT NULL, marked_by TEXT NOT NULL, marked_at TEXT NOT NULL, "
        "active INTEGER NOT NULL DEFAULT 1)"),
        ("CREATE TABLE gold_answers (id INTEGER PRIMARY KEY, "
        "image_id INTEGER NOT NULL REFERENCES images(id), reviewer TEXT NOT NULL, label TEXT, "
        "action TEXT NOT NULL, undoes INTEGER REFERENCES gold_answers(id), created_at TEXT NOT NULL)"),
        "CREATE INDEX idx_gold_answers ON gold_answers(reviewer, image_id, id)",
        "CREATE INDEX idx_gold_answers_undoes ON gold_answers(undoes)",
        ("CREATE TABLE adjudications (id INTEGER PRIMARY KEY, "
        "image_id INTEGER NOT NULL REFERENCES images(id), label TEXT NOT NULL, "
        "reviewer TEXT NOT NULL, event_id INTEGER NOT NULL REFERENCES label_events(id), "
        "created_at TEXT NOT NULL)"),
        "CREATE INDEX idx_adjudications_image ON adjudications(image_id, id)",
    ):
        db.execute(sql)
