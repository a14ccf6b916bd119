"""Active learning: how many labels does each review order need to train a good model?

    .venv/bin/python bench/active_learning.py                       # synthetic, 10 classes
    .venv/bin/python bench/active_learning.py --folder TREE         # a real folder-per-class tree
        [--per-class 80] [--gen-size 256] [--size 128] [--k 10] [--seed-per-class 2]
        [--budget 400]
        [--repeats 3] [--holdout 0.25] [--family texture|cnn] [--pattern REGEX] [--json]

A reviewer is simulated who reveals an image's folder label only when the tool asks for it:

1. the tree (default: ``core.synth.write_dataset(layout='folders')``, ``--per-class`` images of
   each of the 10 classes generated at ``--gen-size`` px as the default model's training set
   is, cached under bench/out/) is read the way training reads it (``core.training.load_inputs``,
   ``--size`` px input);
2. a group-aware test set is held out (``core.datasets.group_holdout``; groups join
   near-copies by difference hash, sub-folders below the class folder and an optional file-name
   ``--pattern``): the model is never scored on a group it could have been asked about;
3. from a seed set (``--seed-per-class`` per class, the same for every strategy) the tool asks
   for ``--k`` labels per round by strategy — least confidence (lowest top-1 probability),
   margin (smallest top-1 − top-2), entropy (most spread) or random (the baseline), exactly the
   review orders of core/review/queues.py — retrains, and scores held-out accuracy, up to
   ``--budget`` labels; ``--repeats`` different seed sets are averaged;
4. the reference is a model trained on every non-held-out image ("everything"); reported per
   strategy: labels needed until the mean curve reaches 95 % of its accuracy.

Family ``texture`` (default, seconds): the fixed texture features of ``core.texture`` are
computed once and the same head as ``core.training.train_texture`` (standardisation + linear,
Adam, class-balanced, 200 steps) is refitted each round. Family ``cnn``: ``core.training``'s SemNet
retrained from scratch each round (``--cnn-epochs``; minutes per strategy, use a small budget).

Output: a table on stdout; bench/out/active_learning.{html,png,json} (plotly; the PNG through
kaleido, which drives /usr/bin/chromium — ``BROWSER_PATH`` overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn.functional as F

from core.datasets import dhash, group_holdout, near_duplicate_pairs, pattern_key
from core.models import softmax
from core.synth import CLASSES, write_dataset
from core.training import TextureNet, folder_items, load_inputs, texture_features, train_arrays

OUT = ROOT / "bench" / "out"
STRATEGIES = ("least confidence", "margin", "entropy", "random")
GOAL = 0.95

Fit = Callable[[np.ndarray, np.ndarray, int], Callable[[np.ndarray], np.ndarray]]


# ---------------------------------------------------------------- data


def dataset(args: argparse.Namespace) -> tuple[Path, list[tuple[str, str]]]:
    if args.folder:
        root = Path(args.folder)
        return root, [(str(p), c) for p, c in folder_items(root)]
    classes = list(CLASSES)[: args.classes]
    root = OUT / f"al_synth_{args.per_class}x{len(classes)}_{args.gen_size}px_s{args.data_seed}"
    if not (root / "ground_truth.jsonl").is_file():
        t = time.perf_counter()
        write_dataset(root, args.per_class * len(classes), seed=args.data_seed, classes=classes,
                      size=args.gen_size, layout="folders", workers=2)
        print(f"generated {args.per_class * len(classes)} synthetic images in "
              f"{time.perf_counter() - t:.0f} s → {root}", file=sys.stderr)
    return root, [(str(p), c) for p, c in folder_items(root)]


def groups_of(root: Path, items: list[tuple[str, str]], x: np.ndarray,
              pattern: str | None) -> list[str]:
    """Connected components of near-copies (dhash ≤ 6 bits), shared sub-folders below the class
    folder and shared ``pattern`` keys."""
    import re

    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(items)
    edges = [near_duplicate_pairs([dhash(x[i, 0]) for i in range(n)], 6)]
    keys: list[list[str | None]] = [[str(Path(p).relative_to(root).parent)
                                     if len(Path(p).relative_to(root).parts) > 2 else None
                                     for p, _ in items]]
    if pattern:
        rx = re.compile(pattern)
        keys.append([pattern_key(rx, Path(p).name) for p, _ in items])
    for ks in keys:
        first: dict[str, int] = {}
        pairs = []
        for i, key in enumerate(ks):
            if key is not None and first.setdefault(key, i) != i:
                pairs.append((first[key], i))
        edges.append(np.array(pairs, np.int64).reshape(-1, 2))
    e = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return [f"g{c}" for c in connected_components(g, directed=False)[1]]


# ---------------------------------------------------------------- learners


def texture_fitter(net: TextureNet, epochs: int = 200, lr: float = 0.05,
                   weight_decay: float = 1e-3) -> Fit:
    """The head of core.training.train_texture on precomputed features: standardisation fitted
    on the labelled features, linear layer, class-balanced cross-entropy, Adam, cosine LR."""

    def fit(f: np.ndarray, y: np.ndarray, k: int) -> Callable[[np.ndarray], np.ndarray]:
        torch.manual_seed(0)
        net.fit_standardisation(f)
        mean, std = net.feat_mean.clone(), net.feat_std.clone()

        def std_(a: np.ndarray) -> torch.Tensor:
            return ((torch.from_numpy(a) - mean) / std).clamp(-8.0, 8.0)

        head = torch.nn.Linear(f.shape[1], k)
        freq = np.bincount(y, minlength=k).astype(np.float64)
        w = torch.tensor(np.where(freq > 0, freq.sum() / np.maximum(freq, 1) / (freq > 0).sum(),
                                  0.0), dtype=torch.float32)
        opt = torch.optim.Adam(head.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        s, yt = std_(f), torch.from_numpy(y)
        for _ in range(epochs):
            loss = F.cross_entropy(head(s), yt, weight=w) + weight_decay * (head.weight ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

        def predict(a: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return softmax(head(std_(a)).numpy())

        return predict

    return fit


def cnn_fitter(class_names: list[str], epochs: int) -> Fit:
    def fit(x: np.ndarray, y: np.ndarray, k: int) -> Callable[[np.ndarray], np.ndarray]:
        res = train_arrays(x, y, x[:0], y[:0], class_names=class_names, epochs=epochs, seed=0)
        return lambda a: softmax(res.predict_logits(a))

    return fit


# ---------------------------------------------------------------- simulation


def pick(strategy: str, p: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (into p's rows) of the k images a strategy asks about next."""
    if strategy == "random":
        return rng.choice(len(p), min(k, len(p)), replace=False)
    s = -np.sort(-p, axis=1)
    score = {"least confidence": s[:, 0],
             "margin": s[:, 0] - (s[:, 1] if p.shape[1] > 1 else 0.0),
             "entropy": (p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)}[strategy]  # −H
    return np.argsort(score, kind="stable")[:k]


def simulate(strategy: str, feats: np.ndarray, y: np.ndarray, pool: np.ndarray, test: np.ndarray,
             k_classes: int, fit: Fit, seed_idx: np.ndarray, k: int, budget: int,
             rng: np.random.Generator) -> list[tuple[int, float]]:
    labelled = list(seed_idx)
    seeded = set(labelled)
    rest = [i for i in pool if i not in seeded]
    curve = []
    while True:
        lab = np.array(labelled)
        predict = fit(feats[lab], y[lab], k_classes)
        acc = float((predict(feats[test]).argmax(1) == y[test]).mean())
        curve.append((len(labelled), acc))
        if len(labelled) >= budget or not rest:
            return curve
        ask = pick(strategy, predict(feats[np.array(rest)]), min(k, budget - len(labelled)), rng)
        chosen = {rest[j] for j in ask}
        labelled += [rest[j] for j in sorted(ask)]  # the reviewer reveals these labels
        rest = [i for i in rest if i not in chosen]


def seed_set(y: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator
             ) -> np.ndarray:
    out = []
    for c in np.unique(y[pool]):
        members = pool[y[pool] == c]
        out += rng.choice(members, min(per_class, len(members)), replace=False).tolist()
    return np.array(out)


def needed(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, a in curve if a >= target), None)


# ---------------------------------------------------------------- output


def figure(curves: dict[str, list[tuple[int, float]]], full: float, title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for s, c in curves.items():
        fig.add_trace(go.Scatter(x=[n for n, _ in c], y=[a for _, a in c], mode="lines+markers",
                                 name=s, line={"dash": "dash" if s == "random" else "solid"}))
    fig.add_hline(y=full, line_dash="dot", line_color="black",
                  annotation_text=f"trained on everything: {full:.3f}", annotation_position="top left")
    fig.add_hline(y=GOAL * full, line_dash="dot", line_color="grey",
                  annotation_text=f"{GOAL:.0%} of that", annotation_position="bottom right")
    fig.update_layout(title=title, xaxis_title="labels revealed", yaxis_title="held-out accuracy",
                      template="plotly_white", width=900, height=560,
                      legend={"title": "strategy (review order)"})
    return fig


def save(fig, stem: Path) -> list[str]:
    notes = []
    fig.write_html(stem.with_suffix(".html"), include_plotlyjs="cdn")
    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
    try:
        fig.write_image(stem.with_suffix(".png"), scale=1)
    except Exception as e:  # noqa: BLE001 - any kaleido / browser failure: say why, keep the HTML
        notes.append(f"PNG not written ({type(e).__name__}: {e}); kaleido ≥ 1 needs Chrome or "
                     f"Chromium at BROWSER_PATH={os.environ['BROWSER_PATH']} (apt-get install "
                     "chromium). The HTML figure was written.")
    return notes


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", help="folder-per-class tree (default: a synthetic one)")
    ap.add_argument("--per-class", type=int, default=80)
    ap.add_argument("--classes", type=int, default=10, help="synthetic classes (≤ 10)")
    ap.add_argument("--data-seed", type=int, default=7)
    ap.add_argument("--size", type=int, default=128, help="model input size (px)")
    ap.add_argument("--gen-size", type=int, default=256, help="synthetic image size (px)")
    ap.add_argument("--k", type=int, default=10, help="labels asked for per round")
    ap.add_argument("--seed-per-class", type=int, default=2)
    ap.add_argument("--budget", type=int, default=400, help="stop at this many labels")
    ap.add_argument("--repeats", type=int, default=3, help="seed sets averaged")
    ap.add_argument("--holdout", type=float, default=0.25)
    ap.add_argument("--pattern", default=None, help="file-name regex naming the specimen")
    ap.add_argument("--family", choices=("texture", "cnn"), default="texture")
    ap.add_argument("--cnn-epochs", type=int, default=8)
    ap.add_argument("--out", default=str(OUT / "active_learning"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.perf_counter()

    root, items = dataset(args)
    x, kept, skipped = load_inputs(items, input_size=(args.size, args.size))
    items = [items[i] for i in kept]
    names = sorted({c for _, c in items})
    y = np.array([names.index(c) for _, c in items])
    groups = groups_of(root, items, x, args.pattern)
    tr, te = group_holdout([c for _, c in items], groups, args.holdout, seed=0)
    pool, test = np.array(tr), np.array(te)
    t_read = time.perf_counter() - t0
    if args.family == "texture":
        feats = texture_features(x)
        fit = texture_fitter(TextureNet(len(names), (args.size, args.size)))
    else:
        feats, fit = x, cnn_fitter(names, args.cnn_epochs)
    t_feat = time.perf_counter() - t0 - t_read
    full = float((fit(feats[pool], y[pool], len(names))(feats[test]).argmax(1) == y[test]).mean())

    runs: dict[str, list[list[tuple[int, float]]]] = {s: [] for s in STRATEGIES}
    for r in range(args.repeats):
        seeds = seed_set(y, pool, args.seed_per_class, np.random.default_rng(100 + r))
        for s in STRATEGIES:
            runs[s].append(simulate(s, feats, y, pool, test, len(names), fit, seeds, args.k,
                                    args.budget, np.random.default_rng(200 + r)))
    mean = {s: [(c[0][j][0], float(np.mean([cc[j][1] for cc in c])))
                for j in range(min(len(cc) for cc in c))] for s, c in runs.items()}
    target = GOAL * full
    need = {s: needed(c, target) for s, c in mean.items()}
    need_each = {s: [needed(c, target) for c in runs[s]] for s in STRATEGIES}
    seconds = time.perf_counter() - t0

    source = f"folder {args.folder}" if args.folder else f"synthetic ({root.name})"
    lines = [
        (f"Active learning — {source}: {len(items)} images, {len(names)} classes, "
         f"{len(set(groups))} groups; held out {len(test)} images ({len({groups[i] for i in te})} "
         f"groups), pool {len(pool)}; family {args.family}; {args.repeats} seed sets of "
         f"{args.seed_per_class}/class, {args.k} labels per round"
         + (f"; {len(skipped)} unreadable" if skipped else "")),
        (f"Trained on everything in the pool ({len(pool)} labels): held-out accuracy {full:.3f}; "
         f"target {GOAL:.0%} of it = {target:.3f}"),
        "",
        "labels  " + "  ".join(f"{s:>16}" for s in STRATEGIES),
    ]
    grid = [n for n, _ in mean[STRATEGIES[0]]]
    show = [n for i, n in enumerate(grid) if i % max(1, len(grid) // 15) == 0 or n == grid[-1]]
    acc = {s: dict(c) for s, c in mean.items()}
    for n in show:
        lines.append(f"{n:>6}  " + "  ".join(f"{acc[s].get(n, float('nan')):>16.3f}"
                                             for s in STRATEGIES))
    lines += ["", (f"Labels needed to reach {GOAL:.0%} of the accuracy of training on everything "
                   "(mean curve; per seed set in brackets):")]
    for s in STRATEGIES:
        each = ", ".join("-" if v is None else str(v) for v in need_each[s])
        lines.append(f"  {s:<17} {need[s] if need[s] is not None else f'not within {args.budget}':>8}"
                     f"   [{each}]")
    lines.append(f"\n{seconds:.0f} s in all (reading {t_read:.0f} s, features {t_feat:.0f} s) on "
                 f"{torch.get_num_threads()} threads")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = figure(mean, full, f"Active learning ({args.family}, {source}): held-out accuracy vs "
                             "labels")
    notes = save(fig, out)
    result = {"source": source, "images": len(items), "classes": names, "pool": len(pool),
              "test": len(test), "groups": len(set(groups)), "family": args.family,
              "full_accuracy": full, "target": target, "labels_needed": need,
              "labels_needed_per_seed_set": need_each, "curves": mean, "seconds": round(seconds, 1),
              "files": [str(out.with_suffix(s)) for s in (".html", ".png")
                        if out.with_suffix(s).is_file()], "notes": notes}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print("\n".join(lines + [f"figure: {', '.join(result['files'])}"] + notes))
    return result


if __name__ == "__main__":
    main()
