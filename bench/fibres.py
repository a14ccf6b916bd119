"""Fibre / nanowire measurement: the gradient method (structure tensor) vs the learned
estimator (ONNX), on held-out synthetic images with known truth, speed, and real micrographs.
Numbers only, no pass/fail.

    .venv/bin/python bench/fibres.py [--n 200] [--seed 9000000] [--speed 10] [--json]

1. accuracy on ``--n`` held-out synthetic wire images (core.synth.generate_wires, seeds far
   from the training sets; 256 px, data bar on some): error of the dominant direction (on
   images whose true order parameter S ≥ 0.5, where a direction exists), absolute error of S
   and of the aligned fraction (± 15°), and for the gradient method the median diameter over
   the true one — overall and by kind (fibres / nanowires) and by number of direction
   populations;
2. speed: seconds per 1024 × 768 image, each method, one process (the 2-core CI budget is
   ≤ 0.3 s for the gradient method);
3. real micrographs in ../shared/real-sem/{fibres,nanowires}: both methods' numbers side by
   side (no truth exists: agreement only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import fibres, synth
from core.images import read_image

REAL = ROOT.parent / "shared" / "real-sem"


def _summ(v: list[float]) -> dict[str, float | None]:
    a = np.asarray([x for x in v if x is not None and np.isfinite(x)], float)
    if a.size == 0:
        return {"n": 0, "median": None, "mean": None, "p90": None}
    return {"n": int(a.size), "median": float(np.median(a)), "mean": float(a.mean()),
            "p90": float(np.percentile(a, 90))}


def accuracy(n: int, seed: int, net: fibres.OrientationNet | None) -> dict[str, Any]:
    rows = []
    for i in range(n):
        img, t = synth.generate_wires(seed + i, 256)
        scan = img[: img.shape[0] - t["databar_px"]].astype(np.float32) / 255.0
        truth = fibres.truth_summary(t)
        row = {"kind": t["kind"], "pops": len(t["populations"]), "truth": truth}
        row["gradient"] = fibres.measure_gradient(scan, t["pixel_size_m"])
        if net is not None:
            row["learned"] = fibres.measure_learned(net, scan, t["pixel_size_m"])
        rows.append(row)
    out: dict[str, Any] = {}
    groups = {"all": rows, "fibres": [r for r in rows if r["kind"] == "fibres"],
              "nanowires": [r for r in rows if r["kind"] == "nanowires"],
              "1 population": [r for r in rows if r["pops"] == 1],
              "2-3 populations": [r for r in rows if r["pops"] > 1]}
    for method in ("gradient", "learned"):
        if net is None and method == "learned":
            continue
        out[method] = {}
        for g, rs in groups.items():
            ang, s_err, af_err, dia = [], [], [], []
            for r in rs:
                m, tr = r[method], r["truth"]
                if m.dominant_deg is None or tr["dominant_deg"] is None:
                    continue
                if tr["order_parameter"] >= 0.5:
                    ang.append(float(fibres.angle_diff(m.dominant_deg, tr["dominant_deg"])))
                s_err.append(abs(m.order_parameter - tr["order_parameter"]))
                if m.aligned_fraction is not None and tr["aligned_fraction"] is not None:
                    af_err.append(abs(m.aligned_fraction - tr["aligned_fraction"]))
                if method == "gradient" and m.diameters.n and tr["diameter_px_median"]:
                    dia.append(m.diameters.px["d50"] / tr["diameter_px_median"])
            out[method][g] = {"images": len(rs), "angle_err_deg": _summ(ang),
                              "S_abs_err": _summ(s_err), "aligned_abs_err": _summ(af_err),
                              **({"diameter_ratio": _summ(dia)} if method == "gradient" else {})}
    return out


def speed(k: int, net: fibres.OrientationNet | None) -> dict[str, Any]:
    imgs = []
    for i in range(k):
        img, t = synth.generate_wires(77_000 + i, 1024, databar=False)
        imgs.append((img[:768].astype(np.float32) / 255.0, t["pixel_size_m"]))
    fibres.measure_gradient(*imgs[0])  # warm-up (imports, caches)
    out: dict[str, Any] = {}
    times = []
    for a, ps in imgs:
        t0 = time.perf_counter()
        fibres.measure_gradient(a, ps)
        times.append(time.perf_counter() - t0)
    out["gradient_s_per_1024x768"] = {"median": statistics.median(times), "max": max(times)}
    if net is not None:
        fibres.measure_learned(net, *imgs[0])
        times = []
        for a, ps in imgs:
            t0 = time.perf_counter()
            fibres.measure_learned(net, a, ps)
            times.append(time.perf_counter() - t0)
        out["learned_s_per_1024x768"] = {"median": statistics.median(times), "max": max(times)}
    return out


def real(net: fibres.OrientationNet | None) -> list[dict[str, Any]]:
    out = []
    for cls in ("fibres", "nanowires"):
        for p in sorted((REAL / cls).glob("*")) if (REAL / cls).is_dir() else []:
            im = read_image(p)
            g = fibres.measure_gradient(im.scan, im.pixel_size_m)
            row = {"class": cls, "file": p.name[-48:], "status": g.status,
                   "gradient": {"dominant": g.dominant_deg, "S": g.order_parameter,
                                "aligned": g.aligned_fraction,
                                "D50": (g.diameters.nm or g.diameters.px).get("d50"),
                                "unit": g.diameter_unit, "s": g.seconds}}
            if net is not None:
                lr = fibres.measure_learned(net, im.scan, im.pixel_size_m)
                row["learned"] = {"dominant": lr.dominant_deg, "S": lr.order_parameter,
                                  "aligned": lr.aligned_fraction}
            out.append(row)
    return out


def _f(v: Any, spec: str = ".3f") -> str:
    return "   —" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=9_000_000)
    ap.add_argument("--speed", type=int, default=10, help="1024×768 images timed")
    ap.add_argument("--model", type=Path, default=fibres.FIBRE_MODEL)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    net = fibres.OrientationNet(a.model, threads=1) if a.model.is_file() else None
    res = {"accuracy": accuracy(a.n, a.seed, net), "speed": speed(a.speed, net),
           "real": real(net)}
    if a.json:
        print(json.dumps(res, indent=2, default=float))
        return
    print(f"1. held-out synthetic wire images (n = {a.n}, seeds {a.seed}+)")
    print(f"{'method':<9} {'group':<16} {'imgs':>4}  {'angle err° med / p90 (n)':>26}  "
          f"{'|ΔS| med / mean':>16}  {'|Δaligned| med / mean':>22}  {'D50 / true med':>14}")
    for method, groups in res["accuracy"].items():
        for g, m in groups.items():
            ae, se, fe = m["angle_err_deg"], m["S_abs_err"], m["aligned_abs_err"]
            dr = m.get("diameter_ratio", {}).get("median")
            print(f"{method:<9} {g:<16} {m['images']:>4}  "
                  f"{_f(ae['median'], '6.2f')} / {_f(ae['p90'], '6.2f')} ({ae['n']:>3})      "
                  f"{_f(se['median'])} / {_f(se['mean'])}  "
                  f"      {_f(fe['median'])} / {_f(fe['mean'])}  {_f(dr, '14.2f')}")
    print("\n2. speed (one process, 1024 × 768)")
    for k, v in res["speed"].items():
        print(f"   {k:<28} median {v['median']:.3f} s   max {v['max']:.3f} s")
    print("\n3. real micrographs (no truth: the two methods side by side)")
    for r in res["real"]:
        g, lr = r["gradient"], r.get("learned") or {}
        print(f"   {r['class']:<9} {r['file']:<48} {r['status']:<9} "
              f"grad θ₀ {_f(g['dominant'], '6.1f')} S {_f(g['S'], '.2f')} "
              f"al {_f(g['aligned'], '.2f')} D50 {_f(g['D50'], '.1f')} {g['unit']:<2} "
              f"| learned θ₀ {_f(lr.get('dominant'), '6.1f')} S {_f(lr.get('S'), '.2f')} "
              f"al {_f(lr.get('aligned'), '.2f')}")


if __name__ == "__main__":
    main()
