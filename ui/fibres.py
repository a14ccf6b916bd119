"""The Fibres page's helpers: widget keys, the cached per-image view (core.fibres.fibre_view),
the cached folder comparison, and the rose / histogram figures."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from core import fibres

KEY_CLASS = "fib_class"
KEY_IMAGE = "fib_image"
KEY_TOL = "fib_tol"
KEY_SIGMA = "fib_sigma"
KEY_AUTO_SIGMA = "fib_auto_sigma"
KEY_MINCOH = "fib_mincoh"
KEY_STORE = "fib_store"
KEY_BATCH = "fib_batch"
KEY_BATCH_METHOD = "fib_batch_method"
KEY_COMPARE_METHOD = "fib_cmp_method"
KEY_FOLDERS = "fib_folders"
KEY_MSG = "fib_msg"
KEY_VIEW = "fib_view"
ALL_CLASSES = "(any class)"


@st.cache_data(ttl=30, show_spinner=False)
def choices(_db: Any, key: str, cls: str | None) -> list[dict[str, Any]]:
    return fibres.image_choices(_db, cls)


@st.cache_data(max_entries=16, show_spinner="Measuring…")
def view(_db: Any, key: str, image_id: int, sigma: float | None, tolerance: float,
         min_coherency: float) -> fibres.FibreView:
    params = fibres.FibreParams(sigma=sigma, tolerance_deg=tolerance, min_coherency=min_coherency)
    return fibres.fibre_view(_db, image_id, params)


@st.cache_data(ttl=30, show_spinner=False)
def comparison(_db: Any, key: str, method: str) -> list[dict[str, Any]]:
    return fibres.compare_folders(_db, method=method)


def clear() -> None:
    choices.clear()
    comparison.clear()


def rose(histograms: dict[str, list[float]], title: str) -> go.Figure:
    """Orientation roses (0–180° mirrored to 360°, counter-clockwise from east), one trace
    per named histogram."""
    fig = go.Figure()
    for name, h in histograms.items():
        n = len(h)
        if not n:
            continue
        width = 180.0 / n
        theta = [(i + 0.5) * width for i in range(n)]
        r = [100 * v for v in h]
        fig.add_trace(go.Barpolar(r=r + r, theta=theta + [t + 180 for t in theta],
                                  width=[width] * (2 * n), name=name, opacity=0.6))
    fig.update_layout(title=title, height=360, margin={"l": 30, "r": 30, "t": 50, "b": 30},
                      polar={"angularaxis": {"direction": "counterclockwise", "rotation": 0},
                             "radialaxis": {"ticksuffix": " %"}},
                      legend={"orientation": "h"})
    return fig


def numbers(res: fibres.FibreResult | None) -> dict[str, Any]:
    """One column of the numbers table."""
    if res is None:
        return {}
    d = res.diameters
    unit = res.diameter_unit
    vals = d.nm if d.nm is not None else d.px

    def f(v: float | None, spec: str = ".3f") -> str:
        return "—" if v is None else format(v, spec)

    return {
        "status": res.status,
        "dominant direction (°)": f(res.dominant_deg, ".1f"),
        "order parameter S": f(res.order_parameter),
        f"aligned fraction (±{res.tolerance_deg:g}°)": f(res.aligned_fraction),
        "coherency": f(res.coherency),
        "wire area fraction": f(res.wire_fraction),
        f"diameter mean ± SD ({unit})": ("—" if not vals else
                                         f"{vals['mean']:.1f} ± {vals['sd']:.1f}"),
        f"D10 / D50 / D90 ({unit})": ("—" if not vals else
                                      f"{vals['d10']:.1f} / {vals['d50']:.1f} / {vals['d90']:.1f}"),
        "diameter samples": str(d.n) if res.method == "gradient" else "—",
        "structure-tensor σ (px)": f(res.sigma_px, ".1f"),
        "time (s)": f(res.seconds, ".2f"),
    }
