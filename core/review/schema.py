"""The review package's own tables and columns (migration set ``semtriage.review``, applied
after the core set by :func:`core.store.open_db`).

* ``predictions.ood``        the image's unfamiliarity score for that model (≥ 1: unlike its
                             training images; NULL: the model has no familiarity statistics);
* ``predictions.unfamiliar`` why the image counts as unfamiliar, in words (NULL: it does not) —
                             such an image is routed to *uncertain*, never auto-accepted;
* ``idx_pred_class``         rebuilt with ``unfamiliar`` last, so that it still covers the
                             routing rule in SQL (:func:`core.review.queue_sql`);
* ``certifications``         append-only record of what allows a model to write auto labels:
                             a threshold certified on this lab's held-out human labels, a
                             threshold an administrator forced (an override), or a revocation —
                             per model and scope (``*`` = every class, or one class).
"""

from __future__ import annotations

from sqlite_utils import Database

from core.store import migration_set

review_migrations = migration_set("semtriage.review")


@review_migrations()
def m001_familiarity_and_certification(db: Database) -> None:
    for sql in (
        "ALTER TABLE predictions ADD COLUMN ood REAL",
        "ALTER TABLE predictions ADD COLUMN unfamiliar TEXT",
        (
            "CREATE TABLE certifications ("
            "id INTEGER PRIMARY KEY, "
            "model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE, "
            "scope TEXT NOT NULL, "
            "state TEXT NOT NULL CHECK (state IN ('certified', 'forced', 'refused', 'revoked')), "
            "accept REAL, target REAL, level REAL, "
            "n_labels INTEGER NOT NULL DEFAULT 0, n_accepted INTEGER NOT NULL DEFAULT 0, "
            "errors INTEGER NOT NULL DEFAULT 0, risk_upper REAL, "
            "by TEXT NOT NULL, note TEXT, created_at TEXT NOT NULL)"
        ),
        "CREATE INDEX idx_certifications_model ON certifications(model_id, scope, id)",
        # the per-class index (core m002) covers the routing rule in SQL (previews, the
        # auto-error estimate): it now needs ``unfamiliar`` too
        "DROP INDEX IF EXISTS idx_pred_class",
        ("CREATE INDEX idx_pred_class ON predictions(model_id, pred, done, p1, queue, p2, second, "
         "unfamiliar)"),
    ):
        db.execute(sql)
