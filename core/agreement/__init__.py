"""Trust between reviewers: overlap (a share of images shown blind to more reviewers),
agreement statistics (Cohen's κ per pair, Krippendorff's α overall and per class, with
bootstrap intervals), adjudication of disagreements, and gold images mixed into the queues.
Its tables are the migration set ``semtriage.agreement`` (:mod:`core.agreement.schema`); the
labels themselves stay in core.review's append-only history."""

from core.agreement import schema as _schema  # noqa: F401 - registers the migration set
from core.agreement.adjudication import (
    adjudicate,
    adjudicated,
    adjudication_queue,
    disputes,
    may_adjudicate,
    require_adjudicator,
)
from core.agreement.flow import decide, next_images, next_probe, undo_last
from core.agreement.gold import (
    DEFAULT_GOLD_RATE,
    gold_images,
    gold_rate,
    gold_scores,
    mark_gold,
    set_gold_rate,
    unmark_gold,
)
from core.agreement.overlap import (
    ALL,
    DECISIONS,
    DECISIONS_SQL,
    OverlapRule,
    clear_overlap,
    draw,
    overlap_rules,
    overlap_status,
    ratings,
    rule_for,
    scope_of,
    set_overlap,
    sync_overlap,
    unit_draw,
)
from core.agreement.report import agreement_report, report_text
from core.agreement.schema import m001_agreement, migrations
from core.agreement.stats import (
    BOOTSTRAP,
    Estimate,
    alpha_from_coincidence,
    coincidence_matrix,
    coincidences,
    cohen_kappa,
    confusion,
    kappa_from_confusion,
    krippendorff_alpha,
    percent_agreement,
)

__all__ = [
    "ALL",
    "BOOTSTRAP",
    "DECISIONS",
    "DECISIONS_SQL",
    "DEFAULT_GOLD_RATE",
    "Estimate",
    "OverlapRule",
    "adjudicate",
    "adjudicated",
    "adjudication_queue",
    "agreement_report",
    "alpha_from_coincidence",
    "clear_overlap",
    "coincidence_matrix",
    "coincidences",
    "cohen_kappa",
    "confusion",
    "decide",
    "disputes",
    "draw",
    "gold_images",
    "gold_rate",
    "gold_scores",
    "kappa_from_confusion",
    "krippendorff_alpha",
    "m001_agreement",
    "mark_gold",
    "may_adjudicate",
    "migrations",
    "next_images",
    "next_probe",
    "overlap_rules",
    "overlap_status",
    "percent_agreement",
    "ratings",
    "report_text",
    "require_adjudicator",
    "rule_for",
    "scope_of",
    "set_gold_rate",
    "set_overlap",
    "sync_overlap",
    "undo_last",
    "unit_draw",
]
