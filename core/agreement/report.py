"""The agreement report: how far reviewers agree on the overlap images (overall, per class, per
reviewer pair, with 95 % bootstrap intervals and the confusion between reviewers) and how often
each reviewer matches the adjudicated labels and the gold images. One dict, the same for
``semtriage agreement --json`` and the Agreement page."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from sqlite_utils import Database

from core.agreement.adjudication import adjudicated, disputes
from core.agreement.gold import gold_images, gold_rate, gold_scores
from core.agreement.overlap import overlap_status, ratings
from core.agreement.stats import (
    BOOTSTRAP,
    cohen_kappa,
    coincidence_matrix,
    confusion,
    krippendorff_alpha,
    percent_agreement,
)
from core.models import wilson


def _score(k: int, n: int) -> dict[str, Any]:
    low, high = wilson(k, n)
    return {"right": k, "n": n, "accuracy": k / n if n else None, "low": low if n else None,
            "high": high if n else None}


def agreement_report(db: Database, *, n_boot: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Everything the Agreement page and ``semtriage agreement`` show (JSON-ready)."""
    units = [u for u in ratings(db).items() if len(u[1]) >= 2]
    rated = [r for _, r in units]
    labels = sorted({lab for r in rated for lab in r.values()})
    reviewers = sorted({x for r in rated for x in r})
    overall = {
        "items": len(rated),
        "ratings": sum(len(r) for r in rated),
        "reviewers": reviewers,
        "labels": labels,
        "alpha": krippendorff_alpha(rated, n_boot=n_boot, seed=seed).as_dict(),
        "percent_agreement": percent_agreement(rated),
        "coincidence": coincidence_matrix(rated, labels).tolist(),
    }
    pairs = []
    for a, b in combinations(reviewers, 2):
        shared = [r for r in rated if a in r and b in r]
        if not shared:
            continue
        la, lb = [r[a] for r in shared], [r[b] for r in shared]
        used = sorted({*la, *lb})
        pairs.append({
            "a": a, "b": b, "items": len(shared),
            "kappa": cohen_kappa(la, lb, n_boot=n_boot, seed=seed).as_dict(),
            "percent_agreement": sum(x == y for x, y in zip(la, lb)) / len(shared),
            "labels": used, "confusion": confusion(la, lb, used).tolist(),
        })
    per_class = []
    for c in labels:
        binary = [{x: lab == c for x, lab in r.items()} for r in rated]
        involved = sum(1 for r in rated if c in r.values())
        est = krippendorff_alpha(binary, n_boot=n_boot, seed=seed).as_dict()
        per_class.append({"label": c, "items": involved, "alpha": est,
                          "agreed": sum(1 for r in rated if set(r.values()) == {c})})
    settled = adjudicated(db)
    gold = gold_scores(db)
    everyone = sorted({*reviewers, *gold})
    per_reviewer = []
    for x in everyone:
        mine = [(i, r) for i, r in units if x in r]
        others = [(r[x], lab) for _, r in mine for y, lab in r.items() if y != x]
        vs_adj = [(r[x] == settled[i]) for i, r in mine if i in settled]
        right, answered = gold.get(x, (0, 0))
        per_reviewer.append({
            "reviewer": x, "ratings": len(mine),
            "agrees_with_others": (sum(a == b for a, b in others) / len(others)) if others else None,
            "vs_adjudicated": _score(sum(vs_adj), len(vs_adj)),
            "vs_gold": _score(right, answered),
        })
    return {
        "overall": overall,
        "pairs": pairs,
        "per_class": per_class,
        "reviewers": per_reviewer,
        "adjudication": {"open": len(disputes(db)), "settled": len(settled)},
        "overlap": overlap_status(db),
        "gold": {"images": len(gold_images(db)), "rate": gold_rate(db),
                 "answers": sum(n for _, n in gold.values())},
        "bootstrap": n_boot,
    }


def report_text(rep: dict[str, Any]) -> str:
    """The report in words (``semtriage agreement``)."""
    def est(e: dict[str, Any]) -> str:
        if e["value"] is None:
            return "undefined (no variation)" if e["n"] >= 2 else "too few items"
        ci = f" [{e['low']:.2f}, {e['high']:.2f}]" if e["low"] is not None else ""
        return f"{e['value']:.3f}{ci}"

    o = rep["overall"]
    ov = rep["overlap"]
    lines = [
        f"Overlap: {ov['chosen']} images chosen, {ov['complete']} with every rating, {ov['waiting']} waiting"
        + ("" if ov["rules"] else " (no overlap rule: `semtriage agreement overlap --rate 0.1`)"),
        f"Agreement on {o['items']} images ({o['ratings']} ratings by {len(o['reviewers'])} reviewers): "
        f"Krippendorff's alpha {est(o['alpha'])}"
        + (f", {o['percent_agreement']:.0%} of pairs agree" if o["percent_agreement"] is not None else ""),
    ]
    if rep["pairs"]:
        lines.append("Reviewer pairs (Cohen's kappa, 95 % bootstrap interval):")
        lines += [f"  {p['a']} / {p['b']}: kappa {est(p['kappa'])} on {p['items']} images, "
                  f"{p['percent_agreement']:.0%} agree" for p in rep["pairs"]]
    if rep["per_class"]:
        lines.append("Per class (alpha of class vs the rest):")
        lines += [f"  {c['label']:<12} alpha {est(c['alpha'])}  on {c['items']} images, all agree on {c['agreed']}"
                  for c in rep["per_class"]]
    if rep["reviewers"]:
        lines.append("Per reviewer:")
        for r in rep["reviewers"]:
            adj, gold = r["vs_adjudicated"], r["vs_gold"]
            parts = [f"{r['ratings']} overlap ratings"]
            if r["agrees_with_others"] is not None:
                parts.append(f"agrees with others {r['agrees_with_others']:.0%}")
            if adj["n"]:
                parts.append(f"adjudicated {adj['right']}/{adj['n']} ({adj['accuracy']:.0%})")
            if gold["n"]:
                parts.append(f"gold {gold['right']}/{gold['n']} ({gold['accuracy']:.0%}, "
                             f"95 % {gold['low']:.0%}–{gold['high']:.0%})")
            lines.append(f"  {r['reviewer']}: " + ", ".join(parts))
    a, g = rep["adjudication"], rep["gold"]
    lines.append(f"Adjudication: {a['open']} open, {a['settled']} settled · Gold: {g['images']} images, "
                 f"rate {g['rate']:.0%}, {g['answers']} answers")
    return "\n".join(lines)
