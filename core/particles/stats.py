"""Size distributions of a set of particles: count, mean, SD, D10 / D50 / D90 with bootstrap
95 % intervals, number- and volume-weighted histograms (linear or log bins), a log-normal fit,
populations from a Gaussian mixture on log size (a population per particle), and two sets side
by side (KS test).

A *set* is a list of image ids (a folder, a predicted class, a saved selection:
core/particles/selections.py); its particles are
read in one query with their nanometre sizes (the user-set pixel size, else the file's). Edge-
and data-bar-cut particles and those labelled ``shadow`` are left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sst
from sklearn.mixture import GaussianMixture
from sqlite_utils import Database

from core.errors import InvalidValue
from core.particles.selections import selection_sets
from core.store import temp_ids

NOT_PARTICLE = "shadow"
BY = ("image", "folder", "class", "selection")


@dataclass
class SizeSet:
    """The particles of a set: ECD (nm, or px when ``unit`` is px) and what was left out."""

    d: np.ndarray
    unit: str  # 'nm' or 'px'
    n_images: int
    n_edge: int
    n_databar: int
    n_not_particle: int
    n_unknown_scale: int  # particles of images without a pixel size (measured in px)
    image_ids: np.ndarray  # per particle
    particle_ids: np.ndarray


def size_set(db: Database, image_ids: Sequence[int] | None = None, *, column: str = "ecd_px"
             ) -> SizeSet:
    """Read a set's sizes. Mixed known / unknown pixel sizes: the set is in nm and the
    particles of unknown-scale images are left out (counted); all unknown: px."""
    if column not in ("ecd_px", "feret_max_px", "feret_min_px"):
        raise InvalidValue(f"size column {column!r}: expected ecd_px, feret_max_px or feret_min_px")
    sql = (f"SELECT p.id, p.image_id, p.{column}, p.excluded, p.label, "
           "COALESCE(pi.pixel_size_m, i.pixel_size_m) FROM particles p "
           "JOIN images i ON i.id = p.image_id LEFT JOIN particle_images pi ON pi.image_id = p.image_id "
           "WHERE p.removed_event IS NULL")
    args: list[Any] = []
    if image_ids is not None:
        ids = [int(i) for i in image_ids]
        if not ids:
            return SizeSet(np.zeros(0), "px", 0, 0, 0, 0, 0, np.zeros(0, int), np.zeros(0, int))
        sql += " AND p.image_id IN " + temp_ids(db, "_pset", ids)
    rows = db.execute(sql, args).fetchall()
    if not rows:
        return SizeSet(np.zeros(0), "px", len(image_ids or []), 0, 0, 0, 0, np.zeros(0, int),
                       np.zeros(0, int))
    pid = np.array([r[0] for r in rows], np.int64)
    iid = np.array([r[1] for r in rows], np.int64)
    d = np.array([r[2] for r in rows], np.float64)
    exc = np.array([r[3] for r in rows])
    lab = np.array([(r[4] or "") for r in rows])
    ps = np.array([r[5] if r[5] else np.nan for r in rows], np.float64)
    n_edge = int((exc == "edge").sum())
    n_bar = int((exc == "databar").sum())
    notp = lab == NOT_PARTICLE
    keep = (exc == "") & ~notp
    known = ~np.isnan(ps)
    unit = "nm" if known[keep].any() else "px"
    n_unknown = 0
    if unit == "nm":
        n_unknown = int((keep & ~known).sum())
        keep &= known
        d = d * np.where(known, ps, 0) * 1e9
    return SizeSet(d[keep], unit, len(set(iid.tolist())), n_edge, n_bar, int((notp & (exc == "")).sum()),
                   n_unknown, iid[keep], pid[keep])


def _boot_ci(d: np.ndarray, qs: Sequence[float], rng: np.random.Generator,
             reps: int = 2000) -> np.ndarray:
    """Bootstrap 95 % intervals of percentiles ``qs`` (rows: q; columns: low, high).

    The k-th smallest of n draws with replacement from the sorted data is ``ds[floor(n·U)]``
    with U ~ Beta(k, n + 1 − k) (the k-th order statistic of n uniforms), so the bootstrap
    distribution of a percentile is sampled exactly without resampling n values per
    replicate (50,000 particles: milliseconds instead of seconds)."""
    n = len(d)
    ds = np.sort(d)
    out = np.empty((len(qs), 2))
    for j, q in enumerate(qs):
        k = min(n, max(1, round(q / 100 * (n - 1)) + 1))
        u = rng.beta(k, n + 1 - k, reps)
        est = ds[np.minimum(n - 1, (u * n).astype(np.int64))]
        out[j] = np.percentile(est, [2.5, 97.5])
    return out


def describe(d: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """count, mean, SD, D10 / D50 / D90 (+ bootstrap 95 % CI) and the log-normal fit."""
    d = np.asarray(d, np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    n = len(d)
    if n == 0:
        return {"count": 0}
    out: dict[str, Any] = {"count": n, "mean": float(d.mean()),
                           "sd": float(d.std(ddof=1)) if n > 1 else 0.0}
    qs = (10, 50, 90)
    vals = np.percentile(d, qs)
    ci = _boot_ci(d, qs, np.random.default_rng(seed)) if n >= 5 else None
    for j, q in enumerate(qs):
        out[f"d{q}"] = float(vals[j])
        out[f"d{q}_ci"] = None if ci is None else [float(ci[j, 0]), float(ci[j, 1])]
    logd = np.log(d)
    mu, sigma = float(logd.mean()), float(logd.std(ddof=1)) if n > 1 else 0.0
    out["lognormal"] = {"median": math.exp(mu), "sigma_log": sigma,
                        "mean": math.exp(mu + sigma ** 2 / 2)}
    return out


def histogram(d: np.ndarray, *, bins: int = 40, log: bool = False, weight: str = "number"
              ) -> dict[str, list[float]]:
    """Bin edges and the fraction per bin, by number or by volume (∝ d³)."""
    d = np.asarray(d, np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    if weight not in ("number", "volume"):
        raise InvalidValue(f"histogram weight {weight!r}: expected 'number' or 'volume'")
    if not len(d):
        return {"edges": [], "fraction": [], "lognormal_pdf": []}
    lo, hi = float(d.min()), float(d.max())
    if hi <= lo:
        hi = lo * 1.01 + 1e-9
    edges = np.geomspace(lo, hi * 1.0001, bins + 1) if log else np.linspace(lo, hi * 1.0001, bins + 1)
    w = d ** 3 if weight == "volume" else np.ones_like(d)
    counts, _ = np.histogram(d, edges, weights=w)
    frac = counts / max(counts.sum(), 1e-300)
    # the log-normal fit as the fraction per bin (number-weighted only)
    pdf: list[float] = []
    if weight == "number" and len(d) > 1:
        mu, s = np.log(d).mean(), max(1e-6, np.log(d).std(ddof=1))
        cdf = sst.norm.cdf((np.log(edges) - mu) / s)
        pdf = np.diff(cdf).tolist()
    return {"edges": edges.tolist(), "fraction": frac.tolist(), "lognormal_pdf": pdf}


def populations(d: np.ndarray, *, max_k: int = 4, seed: int = 0) -> dict[str, Any]:
    """Size populations: a Gaussian mixture on log d, k chosen by BIC (1..``max_k``). Returns
    the populations (median, share, count) sorted by size and a population index per particle."""
    d = np.asarray(d, np.float64)
    ok = np.isfinite(d) & (d > 0)
    x = np.log(d[ok])[:, None]
    if len(x) < 10:
        return {"k": 1 if len(x) else 0, "populations": [], "assignment": [0] * len(d)}
    best = None
    for k in range(1, max_k + 1):
        if len(x) < 5 * k:
            break
        gm = GaussianMixture(k, random_state=seed, n_init=2).fit(x)
        bic = gm.bic(x)
        mu = np.sort(gm.means_[:, 0])
        sd = float(np.sqrt(gm.covariances_.ravel()).mean())
        apart = k == 1 or float(np.diff(mu).min()) >= 2.0 * sd  # modes, not shoulders
        if best is None or (bic < best[0] - 10 and apart):  # a new population earns its place
            best = (bic, gm)
    assert best is not None  # k = 1 always fits (len(x) ≥ 10)
    gm = best[1]
    order = np.argsort(gm.means_[:, 0])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    lab = rank[gm.predict(x)]
    assign = np.full(len(d), -1)
    assign[ok] = lab
    pops = []
    for j, c in enumerate(order):
        pops.append({"population": j, "median": float(math.exp(gm.means_[c, 0])),
                     "sigma_log": float(math.sqrt(gm.covariances_.ravel()[c])),
                     "share": float(gm.weights_[c]), "count": int((lab == j).sum())})
    return {"k": len(pops), "populations": pops, "assignment": assign.tolist()}


def compare_sets(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Two sets side by side: their descriptions and the two-sample KS test."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    res: dict[str, Any] = {"a": describe(a), "b": describe(b)}
    if len(a) and len(b):
        ks = sst.ks_2samp(a, b)
        res["ks"] = {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)}
    return res


def group_sets(db: Database, by: str, image_ids: Sequence[int] | None = None) -> dict[str, list[int]]:
    """Image ids of each folder (group key) / class (current label, else prediction) / image
    that has particles, or of each saved selection (every one, with particles or not);
    ``image_ids`` keeps only those images."""
    if by not in BY:
        raise InvalidValue(f"--by {by!r}: expected one of {BY}")
    want = None if image_ids is None else {int(i) for i in image_ids}
    if by == "selection":
        return {k: [i for i in v if want is None or i in want] for k, v in selection_sets(db).items()}
    if by == "image":
        sql = "SELECT i.name || ' (' || i.id || ')', i.id FROM images i"
    elif by == "folder":
        sql = "SELECT COALESCE(i.group_key, '(none)'), i.id FROM images i"
    else:
        sql = ("SELECT COALESCE(c.label, p.pred, '(none)'), i.id FROM images i "
               "LEFT JOIN current_labels c ON c.image_id = i.id LEFT JOIN predictions p ON "
               "p.image_id = i.id AND p.model_id = (SELECT id FROM models WHERE active = 1)")
    sql += " WHERE i.id IN (SELECT image_id FROM particle_images)"
    out: dict[str, list[int]] = {}
    for key, iid in db.execute(sql):
        if want is None or iid in want:
            out.setdefault(str(key), []).append(iid)
    return out


def set_stats(db: Database, image_ids: Sequence[int] | None = None, *, mixture: bool = True
              ) -> dict[str, Any]:
    """Everything a set's distribution panel shows (no histogram: see :func:`histogram`)."""
    s = size_set(db, image_ids)
    out = describe(s.d)
    out.update(unit=s.unit, images=s.n_images, excluded_edge=s.n_edge, excluded_databar=s.n_databar,
               not_particles=s.n_not_particle, unknown_scale=s.n_unknown_scale)
    if mixture and len(s.d):
        pops = populations(s.d)
        out["populations"] = pops["populations"]
    return out
