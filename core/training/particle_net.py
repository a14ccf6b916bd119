"""torch: the particle segmenter — a small U-Net predicting foreground, boundary and a
normalised distance map (split into particles by a watershed, core.particles.instances: the
StarDist / Cellpose idea without their dependencies), trained on synthetic particle micrographs
(core.synth.particle_micrograph) and optionally verified real images, exported to one
self-contained ONNX file with its metadata and card.

Reproduce the shipped default (about 19 minutes on 2 CPU cores; a path writes it elsewhere)::

    nice -n 10 .venv/bin/python -m core.training.particle_net [OUT.onnx]
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from core.access import User, require_admin
from core.errors import Cancelled, ModelError
from core.models import card_path, write_card
from core.particles import (
    MIN_TRAIN_VERIFIED,
    OUTPUT_KINDS,
    SEED_FLOOR,
    SEED_H,
    active_detector,
    evaluate_on,
    list_detectors,
    normalise,
    register_detector,
    targets,
    truth_pairs,
    verified_images,
)
from core.progress import Progress, silent
from core.store import write_tx
from core.synth import PARTICLE_SYNTH_VERSION, particle_micrograph

PARTICLE_WIDTHS = (8, 16, 32, 64)
CROP = 128
DEFAULT_PARTICLE_VERSION = "particles-default-v3"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ParticleUNet(nn.Module):
    """U-Net, one level per width (default 8 / 16 / 32 / 64 + a 128 bottleneck: a receptive
    field wide enough for a clump of 60 px particles), 3 output maps. Inputs must be a
    multiple of 2 ** levels."""

    def __init__(self, widths: Sequence[int] = PARTICLE_WIDTHS):
        super().__init__()
        self.widths = tuple(widths)
        w = self.widths
        self.down = nn.ModuleList()
        cin = 1
        for c in w:
            self.down.append(_block(cin, c))
            cin = c
        self.mid = _block(w[-1], w[-1] * 2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cin = w[-1] * 2
        for c in reversed(w):
            self.up.append(nn.ConvTranspose2d(cin, c, 2, stride=2))
            self.dec.append(_block(2 * c, c))
            cin = c
        self.head = nn.Conv2d(w[0], len(OUTPUT_KINDS), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, dec, s in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), s], 1))
        return self.head(x)


@dataclass
class ParticleTrainResult:
    model: ParticleUNet
    seconds: float
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    training_data: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


def synthetic_pairs(n: int, seed: int = 0, size: tuple[int, int] = (256, 320)
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` synthetic (image [0, 1] without data bar, instance labels) pairs."""
    out = []
    for i in range(n):
        img, tr = particle_micrograph(seed * 100_003 + i, size)
        h = img.shape[0] - tr["databar_px"]
        out.append((img[:h].astype(np.float32) / 255.0, tr["labels"][:h]))
    return out


def _batch(pairs: list[tuple[np.ndarray, np.ndarray]], tgts: list[np.ndarray],
           rng: np.random.Generator, n: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random crops of the (already normalised, as at inference) images with their
    targets: quarter turns, mirror, contrast and offset jitter, now and then a little blur or
    extra noise."""
    xs, ys = [], []
    for _ in range(n):
        j = int(rng.integers(len(pairs)))
        x, t = pairs[j][0], tgts[j]
        h, w = x.shape
        if h < crop or w < crop:
            ph, pw = max(0, crop - h), max(0, crop - w)
            x = np.pad(x, ((0, ph), (0, pw)), mode="reflect")
            t = np.pad(t, ((0, 0), (0, ph), (0, pw)))
            h, w = x.shape
        y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        xc, tc = x[y0 : y0 + crop, x0 : x0 + crop], t[:, y0 : y0 + crop, x0 : x0 + crop]
        k = int(rng.integers(4))
        xc, tc = np.rot90(xc, k), np.rot90(tc, k, axes=(1, 2))
        if rng.random() < 0.5:
            xc, tc = xc[:, ::-1], tc[:, :, ::-1]
        xc = xc * float(np.exp(rng.normal(0, 0.2))) + float(rng.normal(0, 0.1))
        if rng.random() < 0.2:
            xc = ndimage.gaussian_filter(xc, float(rng.uniform(0.5, 1.2)))
        if rng.random() < 0.2:
            xc = xc + rng.normal(0, float(rng.uniform(0.02, 0.1)), xc.shape)
        xs.append(np.asarray(xc, np.float32)[None])
        ys.append(np.ascontiguousarray(tc))
    return torch.from_numpy(np.stack(xs).astype(np.float32)), torch.from_numpy(np.stack(ys))


_CONTACT_WEIGHT = 4.0


def _contact_weights(labels: np.ndarray, reach: int = 2) -> np.ndarray:
    """Per-pixel loss weights: 1, plus ``_CONTACT_WEIGHT`` within ``reach`` px of where two
    particles meet (their touching rims and the gap between them) — the few pixels that decide
    whether a clump comes out as one particle or several (the U-Net paper's border weights)."""
    lab = np.asarray(labels, np.int32)
    big = np.int32(2**30)  # above any label; far from the dtype's limit (scipy wraps there)
    size = 2 * reach + 1
    hi = ndimage.grey_dilation(lab, size=size)
    lo = ndimage.grey_erosion(np.where(lab > 0, lab, big), size=size)
    contact = (lo < big) & (hi != lo)
    return (1.0 + _CONTACT_WEIGHT * contact).astype(np.float32)


def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Foreground and boundary cross-entropy and the distance error; a 4th target channel
    (_contact_weights) weights every pixel."""
    fg, bd, dist = y[:, 0], y[:, 1], y[:, 2]
    w = y[:, 3] if y.shape[1] > 3 else torch.ones_like(fg)
    l_fg = (F.binary_cross_entropy_with_logits(out[:, 0], fg, reduction="none") * w).mean()
    l_bd = (F.binary_cross_entropy_with_logits(out[:, 1], bd, pos_weight=torch.tensor(3.0),
                                               reduction="none") * w).mean()
    l_d = (((out[:, 2] - dist) ** 2) * (0.2 + fg) * w).mean()
    return l_fg + 0.5 * l_bd + 2.0 * l_d


def train_particles(pairs: list[tuple[np.ndarray, np.ndarray]], *, seconds: float = 240.0,
                    max_steps: int = 4000, batch: int = 8, crop: int = CROP, seed: int = 0,
                    lr: float = 3e-3, init: ParticleUNet | None = None,
                    widths: Sequence[int] = PARTICLE_WIDTHS,
                    training_data: dict[str, Any] | None = None, progress: Progress | None = None,
                    cancel: threading.Event | None = None) -> ParticleTrainResult:
    """Train (or fine-tune ``init``) for at most ``seconds`` of wall time / ``max_steps``.
    Channels-last tensors, and bfloat16 autocast where the CPU computes in bfloat16 (AVX-512
    BF16 / AMX): about twice the steps per second of plain float32 on 2 cores (weights and
    loss stay float32; the card says which precision ran)."""
    if not pairs:
        raise ModelError("No training images for the particle detector")
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    tgts = [np.concatenate([targets(lab), _contact_weights(lab)[None]]) for _, lab in pairs]
    pairs = [(normalise(img), lab) for img, lab in pairs]  # the whole image, as at inference
    model = init if init is not None else ParticleUNet(widths)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in the stubs
    model.train()
    bf16 = _bf16_fast()
    training_data = {**(training_data or {}), "precision": "bfloat16 autocast" if bf16 else "float32"}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.perf_counter()
    history: list[dict[str, float]] = []
    step, running = 0, 0.0
    while step < max_steps and time.perf_counter() - t0 < seconds:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Particle detector training cancelled; nothing was kept")
        frac = min(1.0, max(step / max_steps, (time.perf_counter() - t0) / seconds))
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        x, y = _batch(pairs, tgts, rng, batch, crop)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x.contiguous(memory_format=torch.channels_last))
        loss = loss_fn(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running = 0.95 * running + 0.05 * loss.item() if step else loss.item()
        step += 1
        if step % 50 == 0:
            history.append({"step": step, "loss": round(running, 4),
                            "t": round(time.perf_counter() - t0, 1)})
            if progress:
                progress(frac, f"step {step}, loss {running:.3f}")
    model = model.to(memory_format=torch.contiguous_format).eval()
    return ParticleTrainResult(model, round(time.perf_counter() - t0, 1), step, history,
                               training_data, seed)


def _bf16_fast() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively (elsewhere autocast is slower)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def export_particles(result: ParticleTrainResult, out_path: str | Path, *, version: str,
                     card_extra: dict[str, Any] | None = None, opset: int = 17) -> Path:
    """One self-contained ONNX file (dynamic batch, height and width) with the particle
    detector metadata and ``<name>.card.json`` beside it; checked against torch."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = result.model.eval()
    mult = 2 ** len(model.widths)
    example = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (1, 1, 4 * mult, 6 * mult)).astype(np.float32))
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["maps"],
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        "maps": {0: "batch", 2: "height", 3: "width"}},
                          opset_version=opset, do_constant_folding=False, dynamo=False)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    meta = {"task": json.dumps("particle-segmentation"), "outputs": json.dumps(list(OUTPUT_KINDS)),
            "normalise": json.dumps("median-percentile"), "multiple_of": str(mult), "tile_size": "512",
            "version": version, "polarity": json.dumps("any"), "fg_threshold": "0.5",
            "seed_threshold": str(SEED_FLOOR), "seed_h": str(SEED_H),
            "training_data": json.dumps(result.training_data, sort_keys=True),
            "architecture": json.dumps({"name": "ParticleUNet", "widths": list(model.widths)})}
    del proto.metadata_props[:]
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    proto.producer_name = "semtriage core.training.particle_net"
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    for extra in (out.with_name(out.name + ".data"), out.with_suffix(".data")):
        if extra.exists():
            raise ModelError(f"Export left an external data file {str(extra)!r}; expected one file")
    x = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (1, 1, 6 * mult, 9 * mult)).astype(np.float32))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        ref = model(x).numpy()
    diff = float(np.abs(got - ref).max())
    if not diff <= 1e-3:
        raise ModelError(f"ONNX Runtime and torch disagree on {str(out)!r}: max |Δ| = {diff:.2e}")
    card = {"version": version, "task": "particle-segmentation",
            "architecture": meta["architecture"], "outputs": list(OUTPUT_KINDS),
            "parameters": sum(p.numel() for p in model.parameters()),
            "training_data": result.training_data, "training_steps": result.steps,
            "training_time_s": result.seconds, "seed": result.seed, "history": result.history[-20:],
            "synthetic_generator": PARTICLE_SYNTH_VERSION, "torch": torch.__version__,
            "onnx_check_max_abs_diff": diff, "model_file": out.name,
            "limits": ("Trained on synthetic micrographs with particles 4–60 px across; "
                       "particles much larger than ~60 px need the image scaled down first.")}
    card.update(card_extra or {})
    write_card(out, card)
    return out


def load_particle_onnx(path: str | Path) -> ParticleUNet:
    """Our U-Net with the weights of an exported ParticleUNet ONNX file (for fine-tuning)."""
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    arch = json.loads(meta.get("architecture", "{}"))
    if arch.get("name") != "ParticleUNet":
        raise ModelError(f"{str(path)!r} is not a ParticleUNet export; cannot fine-tune it")
    model = ParticleUNet(arch.get("widths", PARTICLE_WIDTHS))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    state = model.state_dict()
    missing = [k for k in state if k not in inits and not k.endswith("num_batches_tracked")]
    if missing:
        raise ModelError(f"{str(path)!r}: weights {missing[:3]}… not found in the ONNX file")
    model.load_state_dict({k: torch.from_numpy(np.array(inits[k])) if k in inits else v
                           for k, v in state.items()})
    return model


def train_default_particles(out: str | Path, *, n_images: int = 300, seconds: float = 640.0,
                            seconds2: float = 460.0, progress: Progress | None = None) -> Path:
    """The shipped default detector: synthetic images only, from scratch, in two runs of at
    most ``seconds`` and ``seconds2`` of wall time (with making the images and the export,
    ≤ 20 min on 2 CPU cores; the budgets make the step count depend on the machine's load,
    and the card records it and the whole wall time): seed 0 (lr 3e-3), then seed 1 on
    ``n_images`` new images from those weights (lr 1e-3). The weights are saved beside
    ``out`` (``.pt``) after each run, so a failed export loses no training."""
    started = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    first = train_particles(synthetic_pairs(n_images, 0), seconds=seconds, max_steps=1_000_000,
                            seed=0, progress=progress)
    torch.save(first.model.state_dict(), out.with_suffix(".pt"))
    recipe = (f"two runs on 2 CPU cores, {CROP}-px crops, AdamW, cosine: ≤ {seconds:.0f} s from "
              f"scratch on {n_images} images (lr 3e-3), then ≤ {seconds2:.0f} s on {n_images} new "
              "ones (lr 1e-3); pixels where particles meet weigh 5×")
    res = train_particles(synthetic_pairs(n_images, 1), seconds=seconds2, max_steps=1_000_000,
                          seed=1, lr=1e-3, init=first.model, progress=progress,
                          training_data={"synthetic_images": 2 * n_images, "real_images": 0,
                                         "generator": PARTICLE_SYNTH_VERSION, "recipe": recipe})
    res.training_data["wall_s_before_export"] = round(time.perf_counter() - started)  # images + runs
    res.steps += first.steps
    res.seconds = round(res.seconds + first.seconds, 1)
    res.history = first.history + res.history
    torch.save(res.model.state_dict(), out.with_suffix(".pt"))
    path = export_particles(res, out, version=DEFAULT_PARTICLE_VERSION)
    out.with_suffix(".pt").unlink()
    return path


def _split_groups(rows: list[dict[str, Any]], fraction: float = 0.25) -> tuple[list[int], list[int]]:
    """Whole groups (folders) held out: about ``fraction`` of the verified images, at least one
    group; a single group is split by image (said in the card)."""
    groups: dict[str, list[int]] = {}
    for r in rows:
        groups.setdefault(str(r["grp"]), []).append(int(r["id"]))
    keys = sorted(groups, key=lambda k: _zlib_hash(k))
    if len(keys) >= 2:
        held: list[int] = []
        for k in keys:
            if len(held) >= fraction * len(rows) and held:
                break
            held += groups[k]
        train = [i for k in keys for i in groups[k] if i not in set(held)]
        if train:
            return train, held
    ids = sorted(int(r["id"]) for r in rows)
    n_held = max(1, round(fraction * len(ids)))
    return ids[n_held:], ids[:n_held]


def _new_version(db: Any, out_dir: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``… when a detector or a file already has that name
    (two candidates trained within the same second)."""
    taken = {d["version"] for d in list_detectors(db)}
    version, k = base, 1
    while version in taken or (out_dir / f"{version}.onnx").exists():
        k += 1
        version = f"{base}-{k}"
    return version


def _zlib_hash(s: str) -> int:
    return zlib.crc32(s.encode())


def retrain_particles(db: Any, out_dir: str | Path, *, synthetic: int = 60, seconds: float = 240.0,
                      seed: int = 0, progress: Progress | None = None,
                      cancel: threading.Event | None = None, by: User | None = None) -> dict[str, Any]:
    """A candidate detector from the verified images (human-proofread or imported masks) plus
    ``synthetic`` synthetic ones, fine-tuned from the active model when it is ours; whole groups
    held out and the candidate compared with the active detector on them. Registered inactive
    (``semtriage particles detector promote VERSION``). Returns the comparison. Administrators
    only when ``by`` is given (the app); ``cancel`` stops it before anything is registered."""
    require_admin(by, "train a particle detector")
    say = progress or silent

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Particle detector training cancelled; nothing was kept")

    rows = verified_images(db)
    if len(rows) < MIN_TRAIN_VERIFIED:
        raise ModelError(f"{len(rows)} verified image(s); retraining needs at least {MIN_TRAIN_VERIFIED} "
                         "(one to train on, one held out): verify images in the app or import masks")
    train_ids, held_ids = _split_groups(rows)
    say(0.0, f"reading {len(rows)} verified images")
    real = [(scan, lab) for _, scan, lab, _ in truth_pairs(db, train_ids)]
    held = truth_pairs(db, held_ids)
    if not real or not held:
        raise ModelError("The verified images could not be read (moved or deleted files?)")
    act = active_detector(db)
    init = load_particle_onnx(act["path"]) if act["kind"] == "model" else None
    check()
    say(0.02, f"making {synthetic} synthetic images")
    syn = synthetic_pairs(synthetic, seed + 7) if synthetic else []
    check()
    # real images weigh more: repeat them so they are about half of the crops
    reps = max(1, len(syn) // max(1, len(real)))
    pairs = syn + real * reps

    def training(f: float, m: str) -> None:
        say(0.05 + 0.85 * f, m)

    res = train_particles(pairs, seconds=seconds, seed=seed, progress=training, cancel=cancel,
                          init=init, lr=1e-3 if init is not None else 3e-3,
                          training_data={"synthetic_images": synthetic, "real_images": len(real),
                                         "held_out_images": len(held), "from": act["version"],
                                         "generator": PARTICLE_SYNTH_VERSION})
    check()
    say(0.9, "exporting the candidate to ONNX")
    version = _new_version(db, Path(out_dir), f"particles-ft-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(out_dir) / f"{version}.onnx"
    export_particles(res, out, version=version)
    try:
        say(0.94, f"comparing with {act['version']} on {len(held)} held-out image(s)")
    except Cancelled:
        for p in (out, card_path(out)):
            p.unlink(missing_ok=True)
        raise
    cand = register_detector(db, path=out, version=version)
    metrics_c = evaluate_on(cand, held)
    metrics_a = evaluate_on(act, held)
    with write_tx(db, "recording the candidate's metrics"):
        db.execute("UPDATE particle_detectors SET metrics = ? WHERE id = ?",
                   [json.dumps({"held_out_images": held_ids, "candidate": metrics_c,
                                "active_at_training": {"version": act["version"], **metrics_a}},
                               default=float), cand["id"]])
    return {"version": version, "path": str(out), "trained_on": len(real), "held_out": len(held),
            "candidate_metrics": metrics_c, "active": act["version"], "active_metrics": metrics_a,
            "steps": res.steps, "seconds": res.seconds}


if __name__ == "__main__":
    import sys

    t_all = time.perf_counter()
    print(train_default_particles(Path(sys.argv[1]) if len(sys.argv) > 1 else
                                  Path(__file__).resolve().parents[2] / "data" / "models"
                                  / "particles-default.onnx",
                                  progress=lambda f, m: print(f"[{100 * f:5.1f}%] {m}", flush=True)))
    print(f"trained and exported in {time.perf_counter() - t_all:.0f} s", flush=True)
