"""Small data: TextureNet (fixed texture features + linear head) vs a short SemNet run.

    .venv/bin/python bench/texture_small_data.py [--n-train 40] [--n-val 15] [--n-test 40]
                                                 [--semnet-epochs 30] [--seed 0]

Synthetic single-class micrographs (core.synth, 256 px, data bar cut off, prepared to 128² as
ingest does) for every class: ``n-train`` per class to train on, ``n-val`` per class to
calibrate on, ``n-test`` per class from other seeds to score. Prints test accuracy and ECE,
training time, feature-extraction speed, and ONNX Runtime throughput at batch 32 (model only,
prepared inputs) for both families. Numbers only, no pass/fail.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_quality import throughput  # bench/: the same ONNX Runtime measurement

from core import models, synth, training
from core.images import prepare
from core.models import Classifier
from core.training import texture_features, train_texture


def make(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i in range(n):
        for k, c in enumerate(synth.CLASSES):
            img, t = synth.generate(c, seed + i, 256)
            scan = img[: 256 - t["databar_px"]].astype(np.float32) / 255.0
            xs.append(prepare(scan, training.INPUT_SIZE, 1, training.MEAN, training.STD))
            ys.append(k)
    return np.stack(xs), np.array(ys)


def score(res: training.TrainResult, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = models.softmax(res.predict_logits(x), res.temperature)
    return float((p.argmax(1) == y).mean()), models.expected_calibration_error(p, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-val", type=int, default=15)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--semnet-epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    names = list(synth.CLASSES)
    t0 = time.perf_counter()
    xtr, ytr = make(a.n_train, a.seed)
    xva, yva = make(a.n_val, a.seed + 50_000)
    xte, yte = make(a.n_test, a.seed + 90_000)
    print(f"data: {len(xtr)} train / {len(xva)} val / {len(xte)} test images, {len(names)} "
          f"classes, made in {time.perf_counter() - t0:.0f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    t0 = time.perf_counter()
    texture_features(xtr)
    feat_s = time.perf_counter() - t0
    print(f"TextureNet features: {len(xtr) / feat_s:.0f} images/s ({feat_s:.1f} s for "
          f"{len(xtr)})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train_texture(xtr, ytr, xva, yva, class_names=names, seed=a.seed)
        secs = time.perf_counter() - t0
        acc, ece = score(res, xte, yte)
        path = training.export_onnx(res, Path(tmp) / "texture.onnx", version="bench-texture")
        rows.append(("TextureNet", res.parameters, secs, acc, ece, throughput(Classifier(path))))
        t0 = time.perf_counter()
        res = training.train_arrays(xtr, ytr, xva, yva, class_names=names, epochs=a.semnet_epochs,
                              seed=a.seed)
        secs = time.perf_counter() - t0
        acc, ece = score(res, xte, yte)
        path = training.export_onnx(res, Path(tmp) / "semnet.onnx", version="bench-semnet")
        rows.append((f"SemNet {a.semnet_epochs} ep", res.parameters, secs, acc, ece,
                     throughput(Classifier(path))))
    print(f"{'model':<16}{'trainable':>10}{'train s':>9}{'test acc':>10}{'ECE':>7}"
          f"{'ORT img/s @32':>15}")
    for name, params, secs, acc, ece, ips in rows:
        print(f"{name:<16}{params:>10}{secs:>9.1f}{acc:>10.3f}{ece:>7.3f}{ips:>15.0f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
