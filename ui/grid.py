"""The Grid confirm page's widget keys and its confirm callback."""


from __future__ import annotations

import streamlit as st

from core import review
from core.errors import ClaimConflict, SemTriageError
from ui.auth import reviewer
from ui.cache import clear_after_label
from ui.state import K, db


def odd_key(iid: int) -> str:
    return f"grid_odd_{iid}"


def class_key(iid: int) -> str:
    return f"grid_cls_{iid}"


def confirm(cls: str, ids: list[int]) -> None:
    """Accept every image not ticked as ``cls``; the ticked ones get their chosen class."""
    ss = st.session_state
    db_, who = db(), reviewer()
    done = {"confirmed": 0, "relabelled": 0, "taken": 0}
    for iid in review.still_open(db_, ids):
        try:
            if ss.get(odd_key(iid)):
                lab = ss.get(class_key(iid)) or cls
                if lab in review.SPECIAL_LABELS:
                    review.decide(db_, iid, lab, reviewer=who)
                else:
                    review.decide(db_, iid, "accept" if lab == cls else "relabel", reviewer=who, label=lab)
                done["relabelled"] += 1
            else:
                review.decide(db_, iid, "accept", reviewer=who, label=cls)
                done["confirmed"] += 1
        except ClaimConflict:
            done["taken"] += 1  # another reviewer has it on screen: leave it to them
        except SemTriageError as e:
            ss[K.grid_msg] = ("error", str(e))
            break
    for iid in ids:
        ss.pop(odd_key(iid), None)
        ss.pop(class_key(iid), None)
    ss.setdefault(K.grid_msg, ("ok", (f"{done['confirmed']} confirmed as {cls}, {done['relabelled']} "
                                     f"relabelled, {done['taken']} left to other reviewers.")))
    clear_after_label()
