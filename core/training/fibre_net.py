"""torch: the learned fibre-orientation estimator (core.fibres.OrientationNet), trained on
synthetic wire images only (core.synth.generate_wires) and exported to one ONNX file with a
model card.

Data: each synthetic image (256 px, no data bar) gives one random square crop (96–256 px),
whose true orientation histogram (36 bins of 5°) and aligned fraction (± 15° of the dominant
direction) are computed from the truth arrays of the crop; the crop goes through
core.fibres.net_tiles exactly as at inference. Augmentation: the eight rotations by 90° and
flips, with their histograms moved to match (a 90° turn counter-clockwise adds 90°, a flip
maps θ to 180° − θ). Loss: KL divergence of the histogram + binary cross-entropy of the
aligned fraction. Seeded; held-out images are whole images of other seeds.

    python -m core.training.fibre_net --out data/models/fibres-orientation.onnx
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from core.errors import ModelError
from core.fibres import (
    FIBRE_MODEL,
    FIBRE_MODEL_KIND,
    NET_INPUT,
    STORED_BINS,
    net_tiles,
    truth_orientation,
)
from core.models import write_card
from core.progress import Progress, silent
from core.synth import generate_wires

FIBRE_TOLERANCE_DEG = 15.0
FIBRE_NET_VERSION = "fibres-orientation-v1"


def _sample(job: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    seed, base = job
    img, tr = generate_wires(base + seed, 256, databar=False)
    rng = np.random.default_rng([base, seed, 7])
    side = int(rng.integers(96, 257))
    y0, x0 = (int(rng.integers(0, 256 - side + 1)) for _ in range(2))
    crop = img[y0:y0 + side, x0:x0 + side].astype(np.float32) / 255.0
    m = tr["mask"][y0:y0 + side, x0:x0 + side]
    a = tr["angle_deg"][y0:y0 + side, x0:x0 + side]
    t = truth_orientation(m, a, FIBRE_TOLERANCE_DEG)
    hist = np.asarray(t["histogram"], np.float32)
    if not hist.sum() > 0:
        hist = np.full(STORED_BINS, 1.0 / STORED_BINS, np.float32)  # no wires: no direction
    return net_tiles(crop, NET_INPUT)[0, 0], hist, float(t["aligned_fraction"] or 0.0)


def fibre_training_data(n: int, base: int, workers: int = 2,
              progress: Progress = silent) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, hs, fs = [], [], []
    with ProcessPoolExecutor(workers) as ex:
        for i, (x, h, f) in enumerate(ex.map(_sample, [(s, base) for s in range(n)],
                                             chunksize=16)):
            xs.append(x)
            hs.append(h)
            fs.append(f)
            if i % 100 == 0:
                progress(i / n, f"synthetic images {i}/{n}")
    return np.stack(xs)[:, None], np.stack(hs), np.asarray(fs, np.float32)


class FibreNet(nn.Module):
    """A small CNN: strided convolutions, global average pooling, 36 + 1 outputs."""

    WIDTHS = (12, 24, 32, 48)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(self.WIDTHS):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, c, k, stride=2, padding=k // 2, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c_in, 64), nn.ReLU(inplace=True),
                                  nn.Linear(64, STORED_BINS + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _augment(x: torch.Tensor, h: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor,
                                                                              torch.Tensor]:
    k = int(torch.randint(0, 4, (1,), generator=g))
    if k:  # counter-clockwise as displayed: +90° per turn = 18 bins
        x = torch.rot90(x, k, dims=(2, 3))
        h = torch.roll(h, 18 * k, dims=1)
    if int(torch.randint(0, 2, (1,), generator=g)):  # left-right flip: θ → 180° − θ
        x = torch.flip(x, dims=(3,))
        h = torch.flip(h, dims=(1,))
    return x, h


def train_fibre_net(n_train: int = 2000, n_val: int = 300, epochs: int = 12, seed: int = 0,
              progress: Progress = silent) -> tuple[FibreNet, dict[str, Any]]:
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    xtr, htr, ftr = fibre_training_data(n_train, 1_000_000 * (seed + 1), progress=progress)
    xva, hva, fva = fibre_training_data(n_val, 1_000_000 * (seed + 1) + 500_000)
    t_data = time.perf_counter() - t0
    net = FibreNet()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((n_train + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    X, H, F = torch.from_numpy(xtr), torch.from_numpy(htr), torch.from_numpy(ftr)
    history = []
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(n_train, generator=g)
        total = 0.0
        for i in range(0, n_train, 64):
            idx = perm[i:i + 64]
            x, h = _augment(X[idx], H[idx], g)
            out = net(x)
            logp = torch.log_softmax(out[:, :STORED_BINS], dim=1)
            loss = (torch.sum(h * (torch.log(h + 1e-8) - logp), dim=1).mean()
                    + nn.functional.binary_cross_entropy_with_logits(out[:, STORED_BINS], F[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        val = evaluate_fibre_net(net, xva, hva, fva)
        history.append({"epoch": ep + 1, "train_loss": round(total / n_train, 4), **val})
        progress((ep + 1) / epochs, f"epoch {ep + 1}/{epochs}: val {val}")
    info = {"n_train": n_train, "n_val": n_val, "epochs": epochs, "seed": seed,
            "data_seconds": round(t_data, 1),
            "training_seconds": round(time.perf_counter() - t0 - t_data, 1),
            "history": history, "validation": history[-1]}
    return net, info


def evaluate_fibre_net(net: FibreNet, x: np.ndarray, h: np.ndarray, f: np.ndarray) -> dict[str, float]:
    net.eval()
    with torch.inference_mode():
        out = torch.cat([net(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)])
    p = torch.softmax(out[:, :STORED_BINS], 1).numpy()
    af = torch.sigmoid(out[:, STORED_BINS]).numpy()
    kl = float(np.mean(np.sum(h * (np.log(h + 1e-8) - np.log(p + 1e-8)), axis=1)))
    return {"val_kl": round(kl, 4), "val_af_mae": round(float(np.mean(np.abs(af - f))), 4)}


def export_fibre_net(net: FibreNet, out: Path, info: dict[str, Any]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    net.eval()
    example = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (3, 1, NET_INPUT, NET_INPUT))
                               .astype(np.float32))
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(tmp), input_names=["input"],
                          output_names=["outputs"],
                          dynamic_axes={"input": {0: "batch"}, "outputs": {0: "batch"}},
                          opset_version=17, dynamo=False)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    meta = {"kind": json.dumps(FIBRE_MODEL_KIND), "version": FIBRE_NET_VERSION, "input_size": str(NET_INPUT),
            "bins": str(STORED_BINS), "tolerance_deg": repr(FIBRE_TOLERANCE_DEG),
            "outputs": json.dumps({"0:36": "orientation histogram logits (5° bins, 0–180°, "
                                           "counter-clockwise from x as displayed)",
                                   "36": "aligned fraction logit"}),
            "training_data": json.dumps({"synthetic_wire_images": info["n_train"]})}
    del proto.metadata_props[:]
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    if out.with_name(out.name + ".data").exists():
        raise ModelError(f"Export left an external data file beside {str(out)!r}")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": example.numpy()})[0]
    with torch.inference_mode():
        ref = net(example).numpy()
    diff = float(np.abs(got - ref).max())
    if not diff <= 1e-4:
        raise ModelError(f"ONNX Runtime and torch disagree on {str(out)!r}: {diff:.2e}")
    card = {"version": FIBRE_NET_VERSION, "kind": FIBRE_MODEL_KIND, "model_file": out.name,
            "task": "orientation histogram and aligned fraction of fibres / nanowires",
            "architecture": f"FibreNet: 4 stages of strided 5/3×3 conv + 3×3 conv (widths "
                            f"{list(FibreNet.WIDTHS)}), BN, ReLU, global mean, 64 → 37",
            "parameters": sum(p.numel() for p in net.parameters()),
            "input": f"1×{NET_INPUT}×{NET_INPUT} square tiles of the scan, each standardised",
            "tolerance_deg": FIBRE_TOLERANCE_DEG, "training_data": "core.synth.generate_wires "
            "synthetic images only; never a real micrograph",
            "onnx_check_max_abs_diff": diff, "torch": torch.__version__, **info}
    write_card(out, card)
    return out


def fibre_net_main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=FIBRE_MODEL)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    net, info = train_fibre_net(a.n, max(100, a.n // 6), a.epochs, a.seed,
                          progress=lambda f, m: print(f"{100 * f:5.1f}% {m}", flush=True))
    print(export_fibre_net(net, a.out, info), info["validation"], info["training_seconds"], "s")


if __name__ == "__main__":
    fibre_net_main()
