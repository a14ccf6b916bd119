"""Out-of-distribution bench: how well does each unfamiliarity score tell images unlike the
training data from images like it?

    .venv/bin/python bench/ood.py [--per-class 120]

Scores compared (higher = less familiar):

* ``texture-mahalanobis``: Mahalanobis distance (Ledoit–Wolf) on the 136 fixed texture
  features, fitted on synthetic training images — what the product stores with every
  prediction (core.models.familiarity);
* ``texture-knn``: mean distance to the 10 nearest training images in the standardised texture
  features;
* ``cnn-maxsoftmax``: 1 − the default model's top-1 probability (calibrated);
* ``cnn-energy``: the default model's energy score, −logsumexp(logits).

Reported as AUROC (0.5 = chance, 1 = perfect) for:

1. held-out synthetic images of known classes vs real instrument TIFFs
   (``../shared/fixtures/sem-tiff/``) and vs the labelled real micrographs
   (``../shared/real-sem/``);
2. held-out classes: for each class, statistics fitted without it; its held-out images vs
   held-out images of the other classes (mean over classes; texture scores only: the CNN was
   trained on every class);
3. the share of each set that the product's limit (score ≥ 1) flags as unfamiliar.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import DEFAULT_MODEL
from core.files import IMAGE_SUFFIXES
from core.models import Classifier, auroc, fit_familiarity
from core.synth import CLASSES
from core.training.data import _synthetic_items, load_inputs
from core.training.texture import texture_features

SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "sem-tiff"
REAL = SHARED / "real-sem"


def real_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def prepared(paths: list[Path]) -> np.ndarray:
    x, _, skipped = load_inputs([(str(p), "?") for p in paths])
    for s in skipped:
        print("  skipped:", s)
    return x


def knn_score(train_z: np.ndarray, z: np.ndarray, k: int = 10) -> np.ndarray:
    d = np.sqrt(((z[:, None, :] - train_z[None, :, :]) ** 2).sum(axis=2))
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=120, help="synthetic training images per class")
    a = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ood-") as tmp:
        n = a.per_class * len(CLASSES)
        tr_items = _synthetic_items(Path(tmp) / "tr", n, 0, CLASSES, 256, None)
        va_items = _synthetic_items(Path(tmp) / "va", n // 3, 7_919_999, CLASSES, 256, None)
        xtr = load_inputs(tr_items)[0]
        xva = load_inputs(va_items)[0]
        ytr = np.array([c for _, c in tr_items])
        yva = np.array([c for _, c in va_items])
    sets = {"fixtures": real_files(FIXTURES) if FIXTURES.is_dir() else [],
            "real-sem": real_files(REAL) if REAL.is_dir() else []}
    xs = {k: prepared(v) for k, v in sets.items() if v}
    print(f"synthetic: {len(xtr)} training, {len(xva)} held-out; "
          + ", ".join(f"{k}: {len(v)}" for k, v in xs.items())
          + f"  ({time.perf_counter() - t0:.0f} s to generate and read)")
    ftr, fva = texture_features(xtr), texture_features(xva)
    fx = {k: texture_features(v) for k, v in xs.items()}
    fam = fit_familiarity(ftr)
    clf = Classifier(DEFAULT_MODEL)

    def cnn(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = clf.run_batches(x).astype(np.float64)
        m = logits.max(axis=1, keepdims=True)
        energy = -(m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))
        return 1.0 - clf.run(x).max(axis=1), energy

    z = lambda f: np.clip((f - fam.mean) / fam.scale, -50, 50)
    scores: dict[str, dict[str, np.ndarray]] = {"synthetic": {}, **{k: {} for k in xs}}
    for name, f, x in [("synthetic", fva, xva), *[(k, fx[k], xs[k]) for k in xs]]:
        scores[name]["texture-mahalanobis"] = fam.score(f)
        scores[name]["texture-knn"] = knn_score(z(ftr), z(f))
        scores[name]["cnn-maxsoftmax"], scores[name]["cnn-energy"] = cnn(x)
    # a combination: each score over its own 99th percentile on held-out synthetic images, max
    lim = {s: float(np.quantile(v, 0.99)) for s, v in scores["synthetic"].items()}
    for v in scores.values():
        v["max(mahalanobis, energy)"] = np.maximum(v["texture-mahalanobis"] / lim["texture-mahalanobis"],
                                                   v["cnn-energy"] / lim["cnn-energy"] if lim["cnn-energy"] > 0
                                                   else v["cnn-energy"] - lim["cnn-energy"] + 1)
    print("\n1. AUROC, real vs held-out synthetic (known classes)")
    print(f"   {'score':<22}" + "".join(f"{k:>12}" for k in xs))
    for s in scores["synthetic"]:
        print(f"   {s:<22}" + "".join(f"{auroc(scores[k][s], scores['synthetic'][s]):>12.3f}" for k in xs))
    print("\n   share of real images above the 99th / 95th percentile of held-out synthetic scores")
    for s in scores["synthetic"]:
        q99, q95 = (np.quantile(scores["synthetic"][s], q) for q in (0.99, 0.95))
        print(f"   {s:<22}" + "".join(f"{(scores[k][s] > q99).mean():>6.0%}/{(scores[k][s] > q95).mean():<5.0%}"
                                          for k in xs))
    print("\n2. AUROC, held-out class vs held-out known classes (statistics fitted without it)")
    per: dict[str, list[float]] = {"texture-mahalanobis": [], "texture-knn": []}
    line = []
    for c in CLASSES:
        f_c = fit_familiarity(ftr[ytr != c])
        pos, neg = fva[yva == c], fva[yva != c]
        per["texture-mahalanobis"].append(auroc(f_c.score(pos), f_c.score(neg)))
        def zc(f: np.ndarray, fc=f_c) -> np.ndarray:
            return np.clip((f - fc.mean) / fc.scale, -50, 50)
        per["texture-knn"].append(auroc(knn_score(zc(ftr[ytr != c]), zc(pos)),
                                        knn_score(zc(ftr[ytr != c]), zc(neg))))
        line.append(f"{c} {per['texture-mahalanobis'][-1]:.2f}")
    for s, v in per.items():
        print(f"   {s:<22} mean {np.mean(v):.3f}  (min {np.min(v):.3f}, max {np.max(v):.3f})")
    print("   per class (mahalanobis): " + ", ".join(line))
    print("\n3. Flagged unfamiliar by the product's limit (texture-mahalanobis score ≥ 1)")
    for k, v in scores.items():
        flagged = v["texture-mahalanobis"] >= 1
        print(f"   {k:<10} {int(flagged.sum()):>4} of {len(flagged):<4} ({flagged.mean():.0%})")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
