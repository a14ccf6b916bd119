"""The Grid confirm page's widget keys, its class choice and its confirm callback. Opening the
page reserves nothing: the images are claimed at the moment of confirming (and released by
the decisions), so a second reviewer sees the same thumbnails until someone confirms them."""


from __future__ import annotations

from typing import Any

import streamlit as st

from core import review
from core.errors import ClaimConflict, SemTriageError
from ui.auth import reviewer
from ui.cache import clear_after_label, grid_counts
from ui.failures import guarded
from ui.state import K, db


def odd_key(iid: int) -> str:
    return f"grid_odd_{iid}"


def class_key(iid: int) -> str:
    return f"grid_cls_{iid}"


def offer_counts(db_: Any, key: str, model_id: int, who: str, include_auto: bool
                 ) -> tuple[dict[str, int], dict[str, int]]:
    """Per predicted class: what Grid confirm can offer ``who`` now (the cached class counts less
    what other reviewers have on screen — claims change by the second, so that part is asked
    every run; it is a small table), and that 'on other screens' part itself."""
    counts = dict(grid_counts(db_, key, model_id, include_auto))
    try:
        busy = review.grid_claimed_by_others(db_, model_id, who, include_auto=include_auto)
    except SemTriageError:
        busy = {}
    for c, k in busy.items():
        counts[c] = max(0, counts.get(c, 0) - k)
    return counts, busy


@guarded("Choosing the class")
def class_chosen() -> None:
    """The class box changed: remember the class (a non-widget key, so that a change of the box's
    labels — e.g. the counts after 'Include auto-accepted' — can never switch it)."""
    st.session_state[K.grid_class] = st.session_state[K.grid_class_box]


@guarded("Confirming the labels")
def confirm(cls: str, ids: list[int], preds: dict[int, str] | None = None) -> None:
    """Give every image not ticked the class ``cls``; the ticked ones get their chosen class.
    ``preds``: each image's predicted class when they differ (a neighbourhood from the
    Similarity page) — the decision is then an accept where the class is the prediction and a
    relabel elsewhere; None: every image is predicted ``cls``. Images another reviewer labelled
    or has on screen meanwhile are left to them (and counted)."""
    ss = st.session_state
    db_, who = db(), reviewer()
    done = {"confirmed": 0, "relabelled": 0, "taken": 0}
    open_ids = [i for i in ids if i in review.still_open(db_, ids)]
    try:
        mine = review.claim(db_, open_ids, who, claim_seconds=60)
    except SemTriageError as e:
        ss[K.grid_msg] = ("error", str(e))
        return
    done["taken"] = len(ids) - len(mine)
    for iid in mine:
        try:
            pred = preds.get(iid, cls) if preds is not None else cls
            if ss.get(odd_key(iid)):
                lab = ss.get(class_key(iid)) or cls
                if lab in review.SPECIAL_LABELS:
                    review.decide(db_, iid, lab, reviewer=who)
                else:
                    review.decide(db_, iid, "accept" if lab == pred else "relabel", reviewer=who, label=lab)
                done["relabelled"] += 1
            else:
                review.decide(db_, iid, "accept" if cls == pred else "relabel", reviewer=who, label=cls)
                done["confirmed"] += 1
        except ClaimConflict:
            done["taken"] += 1  # another reviewer has it on screen: leave it to them
        except SemTriageError as e:
            ss[K.grid_msg] = ("error", str(e))
            break
    for iid in ids:
        ss.pop(odd_key(iid), None)
        ss.pop(class_key(iid), None)
    review.release_claims(db_, who, mine)  # those a failed decision left behind
    ss.setdefault(K.grid_msg, ("ok", (f"{done['confirmed']} confirmed as {cls}, {done['relabelled']} "
                                     f"relabelled, {done['taken']} left to other reviewers.")))
    clear_after_label()
