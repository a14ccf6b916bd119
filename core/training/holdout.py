"""The labelled images a candidate learns from, their groups, and a stratified hold-out of
whole groups — with clear errors when the labels cannot support one (too few, one class, a
class seen in a single group)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from core.datasets import group_holdout, group_report, image_groups, image_hashes
from core.errors import TrainingError
from core.progress import Progress
from core.review import SPECIAL_LABELS
from core.store import HUMAN_SOURCES

MIN_LABELS = 10


@dataclass
class Split:
    """Labelled images (aligned lists), their groups and the train / held-out indices."""

    image_ids: list[int]
    paths: list[str]
    labels: list[str]
    groups: list[str]
    train_idx: list[int]
    holdout_idx: list[int]
    class_names: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def gather_labels(db: Database, sources: Sequence[str] = HUMAN_SOURCES) -> list[tuple[int, str, str]]:
    """(image id, path, label) of every image whose current label comes from ``sources``,
    special labels (several, unusable) left out; by image id."""
    marks = ", ".join("?" for _ in sources)
    specials = ", ".join("?" for _ in SPECIAL_LABELS)
    return [(int(r[0]), str(r[1]), str(r[2])) for r in db.execute(
        "SELECT c.image_id, i.path, c.label FROM current_labels c JOIN images i ON i.id = c.image_id "
        f"WHERE c.source IN ({marks}) AND c.label NOT IN ({specials}) ORDER BY c.image_id",
        [*sources, *SPECIAL_LABELS])]


def label_summary(db: Database, sources: Sequence[str] = HUMAN_SOURCES) -> dict[str, int]:
    """Trainable labels per class."""
    return dict(sorted(Counter(lab for _, _, lab in gather_labels(db, sources)).items()))


def plan_split(db: Database, opts: Any, progress: Progress | None = None) -> Split:
    """Labels, groups and a stratified whole-group hold-out, with clear errors when the labels
    cannot support one (too few, one class, a class seen in a single group)."""
    prog = progress or (lambda f, m: None)
    rows = gather_labels(db, opts.sources)
    counts = Counter(lab for _, _, lab in rows)
    if len(rows) < MIN_LABELS:
        raise TrainingError(f"Only {len(rows)} labelled images ({dict(counts)}); retraining needs "
                            f"at least {MIN_LABELS}, from at least 2 classes. Review more images.")
    if len(counts) < 2:
        raise TrainingError(f"All {len(rows)} labelled images are {next(iter(counts))!r}; "
                            "retraining needs at least 2 classes.")
    ids = [r[0] for r in rows]
    image_hashes(db, ids, progress=lambda f, m: prog(f, "hashing images: " + m))
    gmap = image_groups(db, ids, pattern=opts.group_pattern or None, use_folder=opts.use_folder,
                        max_distance=opts.max_distance)
    groups = [str(gmap[i]) for i in ids]
    labels = [r[2] for r in rows]
    per_class: dict[str, set[str]] = {}
    for lab, g in zip(labels, groups, strict=True):
        per_class.setdefault(lab, set()).add(g)
    single = {c: counts[c] for c, gs in sorted(per_class.items()) if len(gs) < 2}
    if len(set(groups)) == 1:
        raise TrainingError(
            f"All {len(rows)} labelled images form one group ({groups[0]!r}): nothing can be held "
            "out as unseen. "
            + ("If that folder mixes specimens, turn grouping by folder off and give a file-name "
               "pattern for the specimen." if opts.use_folder and groups[0].startswith("folder:")
               else "Label images from other specimens or folders."))
    if single:
        raise TrainingError(
            "Class(es) " + ", ".join(f"{c!r} ({n} image{'s' if n != 1 else ''})"
                                     for c, n in single.items())
            + " come from a single group (one folder / specimen / near-duplicate set): a model "
            "cannot be trained and tested on unseen groups of them. Label images of that class "
            "from another specimen or folder"
            + (", or turn grouping by folder off if a folder mixes specimens (then give a "
               "filename pattern for the specimen)" if opts.use_folder else
               ", or change the filename pattern") + ".")
    tr, ho = group_holdout(labels, groups, opts.holdout, opts.seed)
    tr, ho = sorted(int(i) for i in tr), sorted(int(i) for i in ho)
    if not ho:
        raise TrainingError("The held-out split came out empty; raise the held-out share.")
    shared = {groups[i] for i in tr} & {groups[i] for i in ho}
    if shared:  # group_holdout's contract; checked because a leak would be silent
        raise TrainingError(f"Groups {sorted(shared)[:5]!r} landed on both sides of the split")
    missing = sorted(set(labels) - {labels[i] for i in tr})
    if missing:
        raise TrainingError(f"No training images left for {missing!r} after holding out whole "
                            "groups; lower the held-out share or label more groups.")
    report = dict(group_report(groups, tr, ho))
    report.setdefault("label_sources", list(opts.sources))
    return Split(ids, [r[1] for r in rows], labels, groups, tr, ho, sorted(counts), report)
