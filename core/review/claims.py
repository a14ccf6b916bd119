"""Claims: which reviewer has which image on screen until when, so that two reviewers never
get the same image at the same time (a claim expires after ``SEMTRIAGE_CLAIM_SECONDS``)."""

from __future__ import annotations

import time

from sqlite_utils import Database

from core.review.labels import clean_reviewer
from core.store import write_tx


def claim(db: Database, image_ids: list[int], reviewer: str, *, claim_seconds: float = 300) -> list[int]:
    """Claim the given images for ``reviewer`` (e.g. a grid of thumbnails), skipping those an
    unexpired claim of another reviewer holds. Returns the ids now claimed, in the given order."""
    reviewer = clean_reviewer(reviewer)
    now = time.time()
    got: list[int] = []
    with write_tx(db, "claiming images"):
        for i in image_ids:
            cur = db.execute(
                "INSERT INTO claims(image_id, reviewer, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(image_id) DO UPDATE SET reviewer = excluded.reviewer, "
                "expires_at = excluded.expires_at "
                "WHERE claims.reviewer = excluded.reviewer OR claims.expires_at <= ?",
                [i, reviewer, now + claim_seconds, now],
            )
            if cur.rowcount:
                got.append(i)
    return got


def release_claims(db: Database, reviewer: str, image_ids: list[int] | None = None) -> None:
    """Give back ``reviewer``'s claims: all of them, or those on ``image_ids``."""
    reviewer = clean_reviewer(reviewer)
    with write_tx(db, "releasing claims"):
        if image_ids is None:
            db.execute("DELETE FROM claims WHERE reviewer = ?", [reviewer])
        else:
            db.conn.executemany("DELETE FROM claims WHERE reviewer = ? AND image_id = ?",
                                [(reviewer, i) for i in image_ids])
