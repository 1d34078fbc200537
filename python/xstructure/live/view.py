"""The live view: a page in the browser that follows a running pipeline, served by Bokeh.

:func:`serve_view` starts a Bokeh server on 127.0.0.1 in a thread of its own (with its own event loop) and
returns a :class:`ViewServer`.  The page samples: a periodic callback calls ``state.snapshot()`` (once per
period however many pages are open) and puts the copy into the plots — the latest frame, the latest radial
profile and the running mean, ΔI/I(q, t) filling in, ΔsM(q) and ΔPDF(r) at a chosen delay, the onset fit, the
inverted structure, rates, counts and latencies.  It never waits for the pipeline, and the heavy work (the
onset fit, ΔsM and ΔPDF) runs in one background thread, at most every few seconds, on the latest reduction,
so the page costs the same at any frame rate.  A fit that fails shows its message and the page goes on.

The page is self-contained: BokehJS comes from the server's own ``/static`` route, never from a CDN, so it works
on a beamline network without internet.  The server listens on 127.0.0.1 only; from another machine, use an SSH
tunnel (``ssh -L 5006:127.0.0.1:5006 host``) and open ``http://localhost:5006``.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import html
import math
import socket
import textwrap
import threading
import time
import types

import numpy as np

from ..experiment.running import edges_of

__all__ = ["ViewServer", "serve_view"]

_W, _H = 520, 318                        # every plot, px
_R = np.linspace(0.0, 8.0, 321)          # ΔPDF distances, Å
_FIT_EVERY_S = 2.0                       # the onset fit at most this often
_REAL_SPACE_EVERY_S = 1.0                # ΔsM and ΔPDF at most this often
_HISTORY_S = 300.0                       # rates shown over the last 5 minutes
_FONT = "font-family: Helvetica, Arial, sans-serif;"
_CPK = {1: "#ffffff", 5: "#ffb5b5", 6: "#909090", 7: "#3050f8", 8: "#ff0d0d", 9: "#90e050", 14: "#f0c8a0",
        15: "#ff8000", 16: "#ffff30", 17: "#1ff01f", 35: "#a62929", 53: "#940094"}


# ---- numbers ---------------------------------------------------------------------------------------------------

def _int(n) -> str:
    return f"{int(n):,}".replace(",", "\u202f")


def _rate(x) -> str:
    x = float(x)
    return "–" if not math.isfinite(x) else (f"{x:,.0f}".replace(",", "\u202f") if x >= 100 else f"{x:.1f}")


def _pm(x: float, err: float) -> str:
    """``x ± err`` to the error's first digit (at least whole fs above 1)."""
    if not (math.isfinite(err) and err > 0):
        return f"{x:.0f}"
    digits = -math.floor(math.log10(err)) if err < 1 else 0
    return f"{x:.{digits}f} ± {err:.{digits}f}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _on_uniform_grid(centres: np.ndarray, values: np.ndarray, axis: int, n: int = 256):
    """Rows (axis 0) or columns (axis 1) of ``values`` on a uniform grid for an image: as they are when the
    centres are evenly spaced, else each of ``n`` uniform cells takes the value of the bin it lies in.

    Returns the values and the outer edges (lo, hi)."""
    e = edges_of(centres)
    step = np.diff(centres)
    if centres.size < 3 or np.allclose(step, step[0], rtol=1e-3, atol=0):
        return values, e[0], e[-1]
    grid = np.linspace(e[0], e[-1], n + 1)
    idx = np.clip(np.searchsorted(e, 0.5 * (grid[1:] + grid[:-1]), "right") - 1, 0, centres.size - 1)
    return np.take(values, idx, axis=axis), e[0], e[-1]


# ---- the structure, seen from an angle ----------------------------------------------------------------------------

def _principal_frame(pos: np.ndarray) -> np.ndarray:
    """Centred positions in their principal axes (largest extent along x, smallest along z), right-handed."""
    x = pos - pos.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False) if len(x) >= 3 else (None, None, np.eye(3))
    if np.linalg.det(vt) < 0:
        vt[2] *= -1
    return x @ vt.T


def _superpose(pos: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``pos`` centred and rotated onto ``ref`` (centred, same atoms) by the Kabsch rotation."""
    x = pos - pos.mean(axis=0)
    u, _, vt = np.linalg.svd(x.T @ ref)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return x @ (u @ np.diag([1.0, 1.0, d]) @ vt)


def _project(pos: np.ndarray, angle_deg: float, tilt_deg: float = 15.0) -> np.ndarray:
    """(N, 3) → (N, 3): turned by ``angle`` about the vertical axis, tilted towards the viewer; z is depth."""
    a, b = np.radians(angle_deg), np.radians(tilt_deg)
    x = pos[:, 0] * np.cos(a) + pos[:, 2] * np.sin(a)
    z = -pos[:, 0] * np.sin(a) + pos[:, 2] * np.cos(a)
    y = pos[:, 1] * np.cos(b) - z * np.sin(b)
    z = pos[:, 1] * np.sin(b) + z * np.cos(b)
    return np.column_stack([x, y, z])


# ---- shared between the pages: one snapshot per period, one analysis thread ------------------------------------

class _Sampler:
    """``state.snapshot()`` at most once per half period, however many pages ask."""

    def __init__(self, state, period_s: float):
        self._state = state
        self._min_age = 0.5 * period_s
        self._lock = threading.Lock()
        self._at = -math.inf
        self._snap = None
        self._error = ""

    def get(self):
        with self._lock:
            now = time.perf_counter()
            if now - self._at >= self._min_age:
                self._at = now
                try:
                    self._snap, self._error = self._state.snapshot(), ""
                except Exception as exc:  # noqa: BLE001 - a failing pipeline shows on the page; the page goes on
                    self._error = f"snapshot failed: {type(exc).__name__}: {_one_line(exc)}"
            return self._snap, self._error


class _Analysis:
    """The onset fit, ΔsM and ΔPDF of the latest reduction, in a thread of their own, throttled."""

    def __init__(self, molecule, probe: str, energy_kev, onset_q_range, label: str = ""):
        self.molecule = molecule
        self.label = label
        self.probe = probe
        self.energy_kev = energy_kev
        self.onset_q_range = onset_q_range
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending = None
        self._key = None
        self._result = None
        self._factor = (None, None)       # (q bytes, ΔsM per unit ΔI/I)
        self._thread = threading.Thread(target=self._run, name="xstructure-live-analysis", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def offer(self, reduced) -> None:
        """Hand over the latest reduction (cheap: keeps a reference; a new one counts when its shots changed)."""
        if reduced is None:
            return
        key = (int(np.sum(reduced.counts)), int(getattr(reduced, "n_off", 0)), np.shape(reduced.diff))
        with self._lock:
            if key != self._key:
                self._pending, self._key = reduced, key

    def result(self):
        with self._lock:
            return self._result

    def _run(self) -> None:
        last_fit = last_real = -math.inf
        fit_key = real_key = None
        fit, fit_msg = None, "onset fit: waiting for delay bins"
        real = None
        version = 0
        while not self._stop.wait(0.2):
            with self._lock:
                red, key = self._pending, self._key
            if red is None:
                continue
            now = time.perf_counter()
            changed = False
            if key != fit_key and now - last_fit >= _FIT_EVERY_S:
                fit, fit_msg = self._fit(red)
                last_fit, fit_key, changed = now, key, True
            if key != real_key and now - last_real >= _REAL_SPACE_EVERY_S:
                try:
                    real = self._real_space(red, fit)
                except Exception as exc:  # noqa: BLE001 - keep the page alive; say why
                    real = {"error": f"ΔsM/ΔPDF failed: {_one_line(exc)}"}
                last_real, real_key, changed = now, key, True
            if changed and real is not None:
                version += 1
                with self._lock:
                    self._result = dict(real, version=version, fit=fit, fit_msg=fit_msg)

    @staticmethod
    def _usable(red):
        """The reduction at the q points with a finite ΔI/I and σ in every bin (q bins that no pixel reaches, or
        masked, hold NaN), as the onset fit reads it."""
        diff = np.asarray(red.diff, dtype=np.float64)
        ok = np.isfinite(diff).all(axis=0)
        sigma = None if red.sigma is None else np.asarray(red.sigma, dtype=np.float64)
        if sigma is not None:
            ok &= (np.isfinite(sigma) & (sigma > 0)).all(axis=0)
        return types.SimpleNamespace(delay=np.asarray(red.delay, dtype=np.float64),
                                     q=np.asarray(red.q, dtype=np.float64)[ok], diff=diff[:, ok],
                                     sigma=None if sigma is None else sigma[:, ok])

    def _fit(self, red):
        from ..experiment import fit_onset

        n = int(np.shape(red.diff)[0])
        if n < 6:
            return None, f"onset fit: {n} delay bins so far, needs 6"
        try:
            use = self._usable(red)
            if use.q.size == 0:
                return None, "onset fit: no q point has a finite ΔI/I and σ in every delay bin"
            if self.onset_q_range is not None:
                fit = fit_onset(use, q_range=self.onset_q_range)
            else:
                late = use.diff[-max(2, n // 4):].mean(axis=0)      # the template: the late-time ΔI/I
                fit = fit_onset(use, template=late)
        except Exception as exc:  # noqa: BLE001 - a failing fit only shows its message
            return None, f"onset fit failed: {_one_line(exc)}"
        if not (math.isfinite(fit.t0) and math.isfinite(fit.width)):
            return None, "onset fit failed: no finite t0"
        return fit, ""

    def _dsm_factor(self, q: np.ndarray) -> np.ndarray:
        """ΔsM per unit ΔI/I at each q (ΔsM is linear in ΔI/I), computed once per q grid."""
        from ..experiment import delta_sm

        key = q.tobytes()
        if self._factor[0] != key:
            self._factor = (key, delta_sm(q, np.ones_like(q), self.molecule, probe=self.probe,
                                          energy_kev=self.energy_kev))
        return self._factor[1]

    def _real_space(self, red, fit) -> dict:
        from ..experiment import delta_pdf

        q = np.asarray(red.q, dtype=np.float64)
        diff = np.asarray(red.diff, dtype=np.float64)
        sigma = None if red.sigma is None else np.asarray(red.sigma, dtype=np.float64)
        delay = np.asarray(red.delay, dtype=np.float64)
        counts = np.asarray(red.counts, dtype=np.float64)
        edges = np.asarray(getattr(red, "edges", np.column_stack([delay, delay])), dtype=np.float64)
        keys = [f"{e:.9g}" for e in edges[:, 0]]
        labels = [f"{t:+.0f} fs  ({_int(c)} shots)" for t, c in zip(delay, counts)]
        if fit is not None and np.any(delay >= fit.t0 + 2 * fit.width):
            cut = fit.t0 + 2 * fit.width
            sel = delay >= cut
            late_label = f"late: mean of t ≥ t0 + 2σ = {cut:.0f} fs ({int(sel.sum())} bins)"
        else:
            sel = np.zeros(delay.size, dtype=bool)
            sel[-max(1, delay.size // 4):] = True
            late_label = f"late: mean of the last {int(sel.sum())} bins"
        w = counts[sel]
        late = (w @ diff[sel]) / w.sum()              # NaN at q points without data, as in the bins
        late_sigma = None
        if sigma is not None:
            s = np.where(np.isfinite(sigma[sel]), sigma[sel], np.nan)
            late_sigma = np.sqrt((w ** 2) @ (s ** 2)) / w.sum()
        out = {"q": q, "keys": keys, "labels": labels, "delay": delay, "diff": diff, "sigma": sigma,
               "late": late, "late_sigma": late_sigma, "late_label": late_label, "error": ""}
        if self.molecule is not None:
            f = self._dsm_factor(q)
            dsm, late_dsm = diff * f, late * f
            out.update(dsm=dsm, dsm_sigma=None if sigma is None else sigma * np.abs(f), late_dsm=late_dsm,
                       late_dsm_sigma=None if late_sigma is None else late_sigma * np.abs(f),
                       pdf=delta_pdf(q, np.nan_to_num(dsm), _R, fill_low_q="zero"),
                       late_pdf=delta_pdf(q, np.nan_to_num(late_dsm), _R, fill_low_q="zero"))
        return out


# ---- one page ----------------------------------------------------------------------------------------------------

def _style(p, legend: bool = False):
    p.title.text_font_size = "14px"
    p.title.text_font_style = "bold"
    p.axis.axis_label_text_font_size = "13px"
    p.axis.axis_label_text_font_style = "normal"
    p.axis.major_label_text_font_size = "12px"
    p.toolbar.logo = None
    p.toolbar.autohide = True
    if legend:
        p.legend.label_text_font_size = "12px"
        p.legend.background_fill_alpha = 0.7
        p.legend.spacing = 0
        p.legend.padding = 4
        p.legend.click_policy = "hide"
    return p


def _data(model, **columns):
    model.data = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in columns.items()}


class _Page:
    """The models of one browser page and their periodic update."""

    def __init__(self, doc, sampler: _Sampler, analysis: _Analysis, period_ms: int, title: str):
        from bokeh.layouts import column, row
        from bokeh.models import (
            ColorBar,
            ColumnDataSource,
            DataRange1d,
            Div,
            HoverTool,
            Label,
            LinearColorMapper,
            Select,
            Slider,
            Span,
            Toggle,
        )
        from bokeh.palettes import RdBu11, Viridis256, interp_palette
        from bokeh.plotting import figure

        self.sampler, self.analysis = sampler, analysis
        self.has_molecule = analysis.molecule is not None
        self._frame_id = None
        self._map_key = None
        self._version = None
        self._res = None
        self._last_t = -math.inf
        self._structure = None
        self._ref = None
        self._rollover = max(60, int(_HISTORY_S * 1000 / period_ms))

        self.header = Div(width=3 * _W + 40, styles={"margin-bottom": "2px"}, name="header")
        self.status = Div(width=3 * _W + 40)

        # the frame
        self.frame_src = ColumnDataSource({"image": [np.zeros((1, 1), np.float32)], "x": [0], "y": [0], "dw": [1],
                                           "dh": [1]}, name="frame")
        self.frame_map = LinearColorMapper(palette=Viridis256, low=0, high=1, nan_color="#dddddd")
        p = figure(width=_W, height=_H, title="Latest frame", x_axis_label="x (binned pixel)",
                   y_axis_label="y (binned pixel)", match_aspect=True, tools="pan,wheel_zoom,box_zoom,reset,save",
                   x_range=DataRange1d(range_padding=0), y_range=DataRange1d(range_padding=0, flipped=True))
        p.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=self.frame_map, source=self.frame_src)
        p.add_layout(ColorBar(color_mapper=self.frame_map, title="log₁₀(1 + counts)", title_text_font_size="12px",
                              title_text_font_style="normal", major_label_text_font_size="11px", width=12,
                              padding=4, title_standoff=8), "right")
        p.grid.visible = False
        self.p_frame = _style(p)

        # the radial profiles
        self.prof_src = ColumnDataSource({"q": [], "latest": [], "average": []}, name="profiles")
        p = figure(width=_W, height=_H, title="Radial profile", x_axis_label="q (Å⁻¹)",
                   y_axis_label="I(q) / mean over q", y_axis_type="log", tools="pan,wheel_zoom,box_zoom,reset,save")
        p.line("q", "average", source=self.prof_src, color="#08306b", line_width=2.5, legend_label="running mean")
        p.line("q", "latest", source=self.prof_src, color="#fd8d3c", line_width=1.2, legend_label="latest frame")
        p.legend.location = "top_right"
        self.p_prof = _style(p, legend=True)

        # rates
        self.rates_src = ColumnDataSource({"t": [], "received": [], "processed": [], "dropped": [],
                                           "received_total": []}, name="rates")
        p = figure(width=_W, height=_H, title="Frame rates", x_axis_label="time since start (s)",
                   y_axis_label="frames / s", tools="pan,wheel_zoom,box_zoom,reset,save")
        for col, colour, dash in (("received", "#1f77b4", "solid"), ("processed", "#2ca02c", "dashed"),
                                  ("dropped", "#d62728", "solid")):
            p.line("t", col, source=self.rates_src, color=colour, line_width=2, line_dash=dash, legend_label=col)
        p.y_range.start = 0
        p.legend.location = "center_left"
        self.p_rates = _style(p, legend=True)

        # ΔI/I(q, t)
        self.map_src = ColumnDataSource({"image": [np.full((1, 1), np.nan, np.float32)], "x": [0], "y": [0],
                                         "dw": [1], "dh": [1], "filled": [0]}, name="diff_map")
        self.map_cmap = LinearColorMapper(palette=interp_palette(RdBu11, 256), low=-1e-3, high=1e-3,
                                          nan_color="#e4e4e4")
        p = figure(width=_W, height=_H, title="ΔI/I(q, t)   (grey: no data)", x_axis_label="q (Å⁻¹)",
                   y_axis_label="delay (fs)", tools="pan,wheel_zoom,box_zoom,reset,save",
                   x_range=DataRange1d(range_padding=0), y_range=DataRange1d(range_padding=0))
        p.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=self.map_cmap, source=self.map_src)
        self.map_t0 = Span(location=0, dimension="width", line_color="black", line_dash="dashed", line_width=1.5,
                           visible=False)
        p.add_layout(self.map_t0)
        p.add_layout(ColorBar(color_mapper=self.map_cmap, title="ΔI/I", title_text_font_size="12px",
                              title_text_font_style="normal", major_label_text_font_size="11px", width=12,
                              padding=4, title_standoff=8), "right")
        p.grid.visible = False
        self.p_map = _style(p)

        # ΔsM (or ΔI/I) at a delay
        self.dsm_src = ColumnDataSource({"q": [], "y": [], "lo": [], "hi": []}, name="dsm")
        p = figure(width=_W, height=_H, title="ΔsM(q)" if self.has_molecule else "ΔI/I(q)",
                   x_axis_label="q (Å⁻¹)", y_axis_label="ΔsM (Å⁻¹)" if self.has_molecule else "ΔI/I",
                   tools="pan,wheel_zoom,box_zoom,reset,save")
        p.varea("q", "lo", "hi", source=self.dsm_src, fill_color="#fdae6b", fill_alpha=0.5)    # ± 1 σ
        p.line("q", "y", source=self.dsm_src, color="#a63603", line_width=2)
        p.add_layout(Span(location=0, dimension="width", line_color="#666666", line_width=1))
        self.p_dsm = _style(p)

        # ΔPDF at a delay
        self.pdf_src = ColumnDataSource({"r": [], "y": []}, name="dpdf")
        p = figure(width=_W, height=_H, title="ΔPDF(r)", x_axis_label="r (Å)", y_axis_label="ΔPDF (Å⁻²)",
                   tools="pan,wheel_zoom,box_zoom,reset,save")
        p.line("r", "y", source=self.pdf_src, color="#54278f", line_width=2)
        p.add_layout(Span(location=0, dimension="width", line_color="#666666", line_width=1))
        if not self.has_molecule:
            p.add_layout(Label(x=_W // 2 - 40, y=_H // 2 - 40, x_units="screen", y_units="screen",
                               text="ΔsM and ΔPDF need the molecule:\nstart the view with --molecule NAME",
                               text_align="center", text_font_size="14px", text_color="#444444"))
        self.p_pdf = _style(p)

        # the onset fit
        self.fit_src = ColumnDataSource({"t": [], "y": [], "lo": [], "hi": []}, name="onset")
        self.curve_src = ColumnDataSource({"t": [], "y": []}, name="onset_curve")
        y_label = ("mean ΔI/I, q in [{:g}, {:g}] Å⁻¹".format(*analysis.onset_q_range)
                   if analysis.onset_q_range is not None else "ΔI/I projected on late ΔI/I")
        p = figure(width=_W, height=_H, title="Onset fit", x_axis_label="delay (fs)", y_axis_label=y_label,
                   tools="pan,wheel_zoom,box_zoom,reset,save")
        p.segment("t", "lo", "t", "hi", source=self.fit_src, color="#555555", line_width=1)
        p.scatter("t", "y", source=self.fit_src, size=6, color="#1f77b4", legend_label="delay bins")
        p.line("t", "y", source=self.curve_src, color="#d62728", line_width=2, legend_label="error-function step")
        self.fit_t0 = Span(location=0, dimension="height", line_color="#d62728", line_dash="dashed", visible=False)
        p.add_layout(self.fit_t0)
        self.fit_msg = Label(x=_W // 2 - 40, y=_H // 2 - 40, x_units="screen", y_units="screen",
                             text="onset fit: waiting for delay bins", text_align="center", text_font_size="13px",
                             text_color="#444444")
        p.add_layout(self.fit_msg)
        p.legend.location = "bottom_right"
        self.p_fit = _style(p, legend=True)
        p.legend.visible = False

        # the structure
        self.atoms_src = ColumnDataSource({"x": [], "y": [], "r": [], "colour": [], "element": [], "index": [],
                                           "depth": []}, name="atoms")
        self.bonds_src = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": []}, name="bonds")
        self.box_src = ColumnDataSource({"x": [-3.0, 3.0], "y": [-3.0, 3.0]})
        p = figure(width=_W, height=_H, title="Inverted structure", x_axis_label="x (Å)", y_axis_label="y (Å)",
                   match_aspect=True, tools="pan,wheel_zoom,reset,save",
                   x_range=DataRange1d(range_padding=0.02), y_range=DataRange1d(range_padding=0.02))
        p.scatter("x", "y", source=self.box_src, alpha=0)      # fixes the extent while the molecule turns
        p.segment("x0", "y0", "x1", "y1", source=self.bonds_src, color="#505050", line_width=5)
        atoms = p.circle("x", "y", radius="r", source=self.atoms_src, fill_color="colour", line_color="#222222",
                         line_width=1, legend_field="element")
        p.add_tools(HoverTool(renderers=[atoms], tooltips=[("atom", "@element @index"), ("depth", "@depth{0.00} Å")]))
        self.no_structure = Label(x=_W // 2 - 40, y=_H // 2 - 40, x_units="screen", y_units="screen",
                                  text="no inverted structure:\nthe pipeline runs without a model",
                                  text_align="center", text_font_size="14px", text_color="#444444",
                                  name="no_structure")
        p.add_layout(self.no_structure)
        p.legend.location = "top_right"
        p.legend.orientation = "horizontal"
        self.p_struct = _style(p, legend=True)

        self.counts = Div(width=_W - 20, height=_H, name="counts")

        # controls
        self.select = Select(title="Delay for ΔsM and ΔPDF" if self.has_molecule else "Delay for ΔI/I(q)",
                             value="late", options=[("late", "late: waiting for delay bins")], width=360)
        self.select.on_change("value", lambda attr, old, new: self._draw_delay())
        self.angle = Slider(title="Structure: view angle about the vertical axis (°)", start=0, end=355, step=5,
                            value=0, width=360)
        self.angle.on_change("value", lambda attr, old, new: self._draw_structure())
        self.spin = Toggle(label="turn the structure", active=False, width=170, margin=(24, 5, 5, 5))

        layout = column(self.header, row(self.select, self.angle, self.spin), self.status,
                        row(self.p_frame, self.p_prof, self.p_rates), row(self.p_map, self.p_dsm, self.p_pdf),
                        row(self.p_fit, self.p_struct, self.counts))
        doc.add_root(layout)
        doc.title = title
        self._draw_structure()
        self.update()
        doc.add_periodic_callback(self.update, period_ms)

    # -- the periodic update --

    def update(self) -> None:
        snap, error = self.sampler.get()
        messages = [error] if error else []
        if snap is not None:
            self.analysis.offer(getattr(snap, "reduced", None))
            for name, part in (("header", self._header), ("frame", self._frame), ("profiles", self._profiles),
                               ("rates", self._rates), ("counts", self._counts), ("ΔI/I map", self._map),
                               ("structure", self._take_structure)):
                try:
                    part(snap)
                except Exception as exc:  # noqa: BLE001 - one bad field of a snapshot must not stop the others
                    messages.append(f"{name}: {type(exc).__name__}: {_one_line(exc)}")
        res = self.analysis.result()
        if res is not None and res["version"] != self._version:
            self._version = res["version"]
            try:
                self._show_analysis(res)
            except Exception as exc:  # noqa: BLE001 - as above
                messages.append(f"analysis: {type(exc).__name__}: {_one_line(exc)}")
        if res is not None and res.get("error"):
            messages.append(res["error"])
        if self.spin.active:
            self.angle.value = (self.angle.value + 10) % 360
        text = " · ".join(html.escape(m) for m in messages)
        self.status.text = (f'<div style="{_FONT} font-size:13px; color:#b00000; min-height:16px">{text}</div>')

    def _header(self, snap) -> None:
        s = dict(getattr(snap, "settings", {}) or {})
        bits = []
        if s.get("source") is not None:
            bits.append(f"source <b>{html.escape(str(s['source']))}</b>"
                        + (f" ({html.escape(str(s['protocol']))})" if s.get("protocol") else ""))
        if s.get("shape") is not None:
            bits.append("frames " + " × ".join(str(int(v)) for v in s["shape"]) + " px")
        if s.get("npt") is not None:
            bits.append(f"{int(s['npt'])} q points")
        if self.analysis.molecule is not None:
            bits.append(f"molecule {html.escape(self.analysis.label)} ({self.analysis.probe})")
        else:
            bits.append(f"no molecule ({self.analysis.probe})")
        model = s.get("model")
        bits.append("no model" if model is None else f"model {html.escape(str(model))}" if model else "model loaded")
        when = (f"t = {snap.time:.1f} s · frame #{_int(snap.frame_id)}" if snap.frame_id >= 0
                else f"t = {snap.time:.1f} s · no frame yet")
        self.header.text = (f'<div style="{_FONT} font-size:15px"><span style="font-size:20px; font-weight:bold">'
                            f'xstructure live</span>&nbsp;&nbsp; {when} &nbsp;|&nbsp; ' + " · ".join(bits) + "</div>")

    def _frame(self, snap) -> None:
        if snap.frame is None or snap.frame_id == self._frame_id:
            return
        self._frame_id = snap.frame_id
        img = np.log10(1.0 + np.clip(np.asarray(snap.frame, dtype=np.float32), 0, None))
        H, W = img.shape
        lit = img[np.isfinite(img) & (img > 0)]
        lo, hi = (np.percentile(lit, [1, 99.8]) if lit.size else (0.0, 1.0))
        self.frame_map.update(low=float(lo), high=float(max(hi, lo + 1e-3)))
        _data(self.frame_src, image=[img], x=[0], y=[0], dw=[W], dh=[H])
        self.p_frame.title.text = f"Latest frame  (#{_int(snap.frame_id)}, {H} × {W} binned pixels)"

    def _profiles(self, snap) -> None:
        q = np.asarray(snap.q, dtype=np.float64)
        if q.size == 0 or (snap.profile is None and snap.average is None):
            return

        def scaled(y):
            if y is None:
                return np.full(q.size, np.nan)
            y = np.asarray(y, dtype=np.float64)
            y = np.where(y > 0, y, np.nan)     # a log axis; q bins no pixel reaches hold 0: a gap
            m = np.nanmean(y) if np.any(np.isfinite(y)) else np.nan
            return y / m if m else y

        _data(self.prof_src, q=q, latest=scaled(snap.profile), average=scaled(snap.average))
        self.p_prof.title.text = f"Radial profile  (running mean of {_int(snap.counts.processed)} frames)"

    def _rates(self, snap) -> None:
        if snap.time <= self._last_t:
            return
        self._last_t = snap.time
        r = snap.rates or {}
        self.rates_src.stream({"t": [snap.time], "received": [float(r.get("received", np.nan))],
                               "processed": [float(r.get("processed", np.nan))],
                               "dropped": [float(r.get("dropped", np.nan))],
                               "received_total": [int(snap.counts.received)]}, rollover=self._rollover)

    def _counts(self, snap) -> None:
        c, r, lat = snap.counts, snap.rates or {}, snap.latency_ms or {}
        cell = 'style="padding:1px 10px; text-align:right"'
        rows = [("received", c.received, r.get("received")), ("processed", c.processed, r.get("processed")),
                ("dropped", c.dropped, r.get("dropped"))]
        rows += [(f"&nbsp;&nbsp;&nbsp;{html.escape(str(k))}", v, None) for k, v in sorted(c.dropped_by.items())]
        rows += [("rejected", c.rejected, None)]
        rows += [(f"&nbsp;&nbsp;&nbsp;{html.escape(str(k))}", v, None) for k, v in sorted(c.rejected_by.items())]
        rows += [("queued", c.queued, None), ("lost in transport", c.lost, None)]
        body = "".join(f"<tr><td style='padding:1px 10px'>{name}</td><td {cell}>{_int(v)}</td>"
                       f"<td {cell}>{'' if rate is None else _rate(rate)}</td></tr>" for name, v, rate in rows)

        def ms(k):
            v = lat.get(k, np.nan)
            return "–" if v is None or not math.isfinite(v) else f"{v:.1f}"

        on = int(np.sum(snap.counts_on)) if np.size(snap.counts_on) else 0
        filled = int(np.count_nonzero(np.asarray(snap.counts_on) > 0)) if np.size(snap.counts_on) else 0
        self.counts.text = (
            f'<div style="{_FONT} font-size:13px"><div style="font-size:14px; font-weight:bold; margin:4px 0 6px 0">'
            'Frames</div><table style="border-collapse:collapse">'
            f"<tr style='border-bottom:1px solid #999'><th style='text-align:left; padding:1px 10px'></th>"
            f"<th {cell}>total</th><th {cell}>per second</th></tr>{body}</table>"
            f"<div style='margin-top:8px'>latency frame → profile: p50 <b>{ms('p50')}</b> ms, "
            f"p99 <b>{ms('p99')}</b> ms</div>"
            f"<div style='margin-top:4px'>ΔI/I: {_int(on)} laser-on shots in {filled} of {np.size(snap.delays)} "
            f"delay bins, {_int(snap.n_off)} laser-off</div></div>")

    def _map(self, snap) -> None:
        diff = np.asarray(snap.diff, dtype=np.float32)
        delays = np.asarray(snap.delays, dtype=np.float64)
        q = np.asarray(snap.q, dtype=np.float64)
        if diff.ndim != 2 or diff.shape != (delays.size, q.size) or diff.size == 0:
            return
        key = hashlib.blake2b(diff.tobytes() + delays.tobytes() + q.tobytes(), digest_size=16).digest()
        if key == self._map_key:
            return
        self._map_key = key
        order = np.argsort(delays, kind="stable")
        delays, diff = delays[order], diff[order]
        img, t_lo, t_hi = _on_uniform_grid(delays, diff, axis=0)
        img, q_lo, q_hi = _on_uniform_grid(q, img, axis=1)
        finite = np.abs(diff[np.isfinite(diff)])
        lim = float(np.percentile(finite, 99.5)) if finite.size else 1e-3
        lim = lim if lim > 0 else 1e-3
        self.map_cmap.update(low=-lim, high=lim)
        filled = int(np.count_nonzero(np.isfinite(diff).any(axis=1)))
        _data(self.map_src, image=[np.ascontiguousarray(img, dtype=np.float32)], x=[q_lo], y=[t_lo],
              dw=[q_hi - q_lo], dh=[t_hi - t_lo], filled=[filled])
        self.p_map.title.text = f"ΔI/I(q, t)   {filled} of {delays.size} delay bins   (grey: no data)"

    # -- the analysis --

    def _show_analysis(self, res) -> None:
        fit = res.get("fit")
        if "keys" in res:
            options = [("late", res["late_label"])] + list(zip(res["keys"], res["labels"]))
            value = self.select.value if self.select.value in res["keys"] else "late"
            self.select.options = options
            self._res = res
            if self.select.value != value:
                self.select.value = value       # draws
            else:
                self._draw_delay()
        if fit is None:
            _data(self.fit_src, t=[], y=[], lo=[], hi=[])
            _data(self.curve_src, t=[], y=[])
            self.fit_t0.visible = self.map_t0.visible = False
            self.p_fit.legend.visible = False
            self.p_fit.title.text = "Onset fit"
            self.fit_msg.update(text=textwrap.fill(res.get("fit_msg") or "no fit", 52), visible=True)
            return
        self.p_fit.legend.visible = True
        self.fit_msg.visible = False
        t, y, e = fit.delay, fit.signal, np.where(np.isfinite(fit.signal_err), fit.signal_err, np.nan)
        _data(self.fit_src, t=t, y=y, lo=y - e, hi=y + e)
        tt = np.linspace(float(np.min(t)), float(np.max(t)), 400)
        _data(self.curve_src, t=tt, y=fit.curve(tt))
        self.fit_t0.update(location=fit.t0, visible=True)
        self.map_t0.update(location=fit.t0, visible=True)
        red_chi2 = fit.chi2 / fit.dof if fit.dof > 0 and math.isfinite(fit.chi2) else math.nan
        scale = math.sqrt(red_chi2) if red_chi2 > 1 else 1.0     # errors widened when the model misses the data
        note = (f", χ²/dof {red_chi2:.2f}" if red_chi2 < 10 else f", χ²/dof {red_chi2:.0f}") if math.isfinite(
            red_chi2) else ""
        note += " (errors × √χ²/dof)" if scale > 1 else ""
        self.p_fit.title.text = (f"Onset fit: t0 = {_pm(fit.t0, scale * fit.t0_err)} fs, "
                                 f"σ = {_pm(fit.width, scale * fit.width_err)} fs{note}")

    def _draw_delay(self) -> None:
        res = self._res
        if res is None or "keys" not in res:
            return
        key = self.select.value
        if key in res["keys"]:
            i = res["keys"].index(key)
            label = res["labels"][i].split("(")[0].strip()
            pick = (lambda name: None if res.get(name) is None else res[name][i])
            d, s = (pick("dsm"), pick("dsm_sigma")) if self.has_molecule else (pick("diff"), pick("sigma"))
            pdf = pick("pdf")
        else:
            label = "late times"
            d, s = ((res.get("late_dsm"), res.get("late_dsm_sigma")) if self.has_molecule
                    else (res["late"], res["late_sigma"]))
            pdf = res.get("late_pdf")
        if d is None:
            return
        s = np.full(d.shape, np.nan) if s is None else np.where(np.isfinite(s), s, np.nan)
        _data(self.dsm_src, q=res["q"], y=d, lo=d - s, hi=d + s)
        if self.has_molecule:
            self.p_dsm.title.text = f"ΔsM(q) at {label}   (band: ± 1 σ)"
            self.p_pdf.title.text = f"ΔPDF(r) at {label}"
            if pdf is not None:
                _data(self.pdf_src, r=_R, y=pdf)
        else:
            self.p_dsm.title.text = f"ΔI/I(q) at {label} ± 1 σ   (ΔsM needs --molecule)"

    # -- the structure --

    def _take_structure(self, snap) -> None:
        st = getattr(snap, "structure", None)
        if st is self._structure:
            return
        self._structure = st
        self._draw_structure()

    def _draw_structure(self) -> None:
        from ase.data import chemical_symbols, covalent_radii

        from ..structures import bond_graph

        st = self._structure
        for widget in (self.angle, self.spin):
            if widget.disabled != (st is None):
                widget.disabled = st is None
        self.p_struct.legend.visible = st is not None
        if st is None:
            self.no_structure.visible = True
            _data(self.atoms_src, x=[], y=[], r=[], colour=[], element=[], index=[], depth=[])
            _data(self.bonds_src, x0=[], y0=[], x1=[], y1=[])
            return
        self.no_structure.visible = False
        numbers = np.asarray(st[0], dtype=np.int64)
        pos = np.asarray(st[1], dtype=np.float64).reshape(-1, 3)
        if self._ref is None or not np.array_equal(self._ref[0], numbers):
            self._ref = (numbers, _principal_frame(pos))
            extent = float(np.max(np.linalg.norm(self._ref[1], axis=1), initial=0.0)) + 0.8
            _data(self.box_src, x=[-extent, extent], y=[-extent, extent])
        aligned = _superpose(pos, self._ref[1]) if len(numbers) >= 3 else pos - pos.mean(axis=0)
        xyz = _project(aligned, float(self.angle.value))
        order = np.argsort(xyz[:, 2])                 # far atoms first: the near ones are drawn over them
        z = numbers[order]
        _data(self.atoms_src, x=xyz[order, 0], y=xyz[order, 1], r=0.2 + 0.3 * covalent_radii[z],
              colour=[_CPK.get(int(k), "#ff1493") for k in z], element=[chemical_symbols[int(k)] for k in z],
              index=[int(i) for i in order], depth=xyz[order, 2])
        i, j = np.nonzero(np.triu(bond_graph(numbers, pos)))
        _data(self.bonds_src, x0=xyz[i, 0], y0=xyz[i, 1], x1=xyz[j, 0], y1=xyz[j, 1])
        formula = "".join(f"{chemical_symbols[k]}{'' if c == 1 else c}"
                          for k, c in sorted(zip(*np.unique(numbers, return_counts=True)),
                                             key=lambda kc: (kc[0] != 6, kc[0] != 1, kc[0])))
        self.p_struct.title.text = f"Inverted structure: {formula}, {i.size} bonds, seen at {self.angle.value:.0f}°"


# ---- the server --------------------------------------------------------------------------------------------------

class ViewServer:
    """A running live view (made by :func:`serve_view`): a Bokeh server on 127.0.0.1 in a thread of its own.

    Attributes
    ----------
    url : str
        Where to open it, ``http://127.0.0.1:<port>/``.
    port : int
        The port it listens on.
    """

    def __init__(self, make_page, port: int, analysis: _Analysis):
        self.port = int(port)
        self.url = f"http://127.0.0.1:{self.port}/"
        self._make_page = make_page
        self._analysis = analysis
        self._ready = threading.Event()
        self._error = None
        self._server = None
        self._loop = None
        self._thread = threading.Thread(target=self._serve, name=f"xstructure-live-view-{self.port}", daemon=True)

    def _start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError(f"the live view did not start on 127.0.0.1:{self.port} within 60 s")
        if self._error is not None:
            exc = self._error
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"port {self.port} on 127.0.0.1 is in use: choose another port "
                                                "(or 0 for any free one)") from None
            if isinstance(exc, OSError):
                raise OSError(exc.errno, f"cannot listen on 127.0.0.1:{self.port}: {exc.strerror or exc}") from None
            raise RuntimeError(f"the live view did not start on 127.0.0.1:{self.port}: {_one_line(exc)}") from None
        self._analysis.start()

    def _serve(self) -> None:
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import Server
        from tornado.ioloop import IOLoop

        asyncio.set_event_loop(asyncio.new_event_loop())
        io_loop = IOLoop.current()
        try:
            origins = [f"127.0.0.1:{self.port}", f"localhost:{self.port}"]
            server = Server({"/": Application(FunctionHandler(self._make_page))}, io_loop=io_loop,
                            address="127.0.0.1", port=self.port, allow_websocket_origin=origins, num_procs=1)
            server.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            self._error = exc
            self._ready.set()
            io_loop.close(all_fds=True)
            return
        self._server, self._loop = server, io_loop
        self._ready.set()
        io_loop.start()
        io_loop.close(all_fds=True)

    def _shutdown(self) -> None:
        try:
            self._server.stop()
        finally:
            self._loop.stop()

    def stop(self) -> None:
        """Stop the server, close every page's connection and end the analysis thread (safe to call twice)."""
        self._analysis.stop()
        if self._loop is not None and self._thread.is_alive():
            self._loop.add_callback(self._shutdown)
            self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._loop is not None and self._thread.is_alive() else "stopped"
        return f"ViewServer({self.url!r}, {state})"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_view(state, port: int = 5006, *, molecule=None, probe: str = "xray", energy_kev: float | None = None,
               period_ms: float = 500, onset_q_range=None) -> ViewServer:
    """Serve the live view of a pipeline in the browser, from a background thread.

    Parameters
    ----------
    state : object
        Anything with a ``snapshot()`` method returning a :class:`xstructure.live.state.Snapshot` (a
        :class:`~xstructure.live.Pipeline`).  It is called once per period from the
        server's thread and must return quickly (a copy); the view never calls anything else on it.
    port : int, optional
        The port on 127.0.0.1; 0 picks a free one (see :attr:`ViewServer.port`).
    molecule : str, ase.Atoms, tuple or None, optional
        The reactant (a name, SMILES or file as :func:`xstructure.molecule` takes, an ``ase.Atoms`` or
        ``(numbers, positions)``): with it the page shows ΔsM(q) and ΔPDF(r); without it ΔI/I(q).
    probe : {'xray', 'electron'}, optional
        The probe (for ΔsM's atomic scattering).
    energy_kev : float or None, optional
        Electron kinetic energy in keV.
    period_ms : int, optional
        How often a page samples the state, ms (≥ 50).
    onset_q_range : tuple or None, optional
        (qmin, qmax) in Å⁻¹ for the onset fit's signal (the mean ΔI/I there); None: ΔI/I projected on the
        late-time ΔI/I (every q counts with its sign).

    Returns
    -------
    ViewServer
        Running; open :attr:`ViewServer.url`, call :meth:`ViewServer.stop` at the end.

    Raises
    ------
    TypeError
        ``state`` has no ``snapshot()`` method.
    ValueError
        A bad port, period, probe, q range or molecule.
    OSError
        The port is in use (or cannot be bound).
    ModuleNotFoundError
        Bokeh is not installed.
    """
    if not callable(getattr(state, "snapshot", None)):
        raise TypeError(f"state must have a snapshot() method (a Pipeline), got {type(state).__name__}")
    if isinstance(port, bool) or not isinstance(port, (int, np.integer)) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0 .. 65535, got {port!r}")
    if isinstance(period_ms, bool) or not isinstance(period_ms, (int, float, np.number)) or not (
            math.isfinite(period_ms) and 50 <= period_ms <= 60000):
        raise ValueError(f"period_ms must lie in 50 .. 60000 ms, got {period_ms!r}")
    if probe not in ("xray", "electron"):
        raise ValueError(f"probe must be 'xray' or 'electron', got {probe!r}")
    if onset_q_range is not None:
        lo, hi = (float(v) for v in onset_q_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise ValueError(f"onset_q_range must be (qmin, qmax) with 0 <= qmin < qmax Å⁻¹, got {onset_q_range!r}")
        onset_q_range = (lo, hi)
    try:
        from bokeh.settings import settings
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the live view needs Bokeh: pip install bokeh") from None
    label = ""
    if isinstance(molecule, str):
        from ..structures import molecule as _molecule

        label = molecule
        molecule = _molecule(molecule)
    if molecule is not None and hasattr(molecule, "get_chemical_formula"):
        formula = molecule.get_chemical_formula()
        label = f"{label} ({formula})" if label and label != formula else formula
    elif molecule is not None:
        label = label or "given"
    if settings.resources(default="server") not in ("server", "server-dev"):
        settings.resources.set_value("server")    # BokehJS from this server's /static: no CDN, works offline
    port = int(port) or _free_port()
    period_ms = round(period_ms)
    analysis = _Analysis(molecule, probe, energy_kev, onset_q_range, label)
    sampler = _Sampler(state, period_ms / 1000.0)

    def make_page(doc):
        _Page(doc, sampler, analysis, period_ms, "xstructure live")

    view = ViewServer(make_page, port, analysis)
    view._start()
    return view
