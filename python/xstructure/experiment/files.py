"""Reduced pump-probe data in an HDF5 file (NeXus layout): :func:`write_reduced` and :func:`read_reduced`.

The layout (T delay bins, Q q points, R distances; NeXus base classes in brackets)::

    /                          attrs default="entry", creator
    /entry                     [NXentry] attrs default="difference", sources (JSON list of the input files)
    /entry/difference          [NXdata] signal="diff", axes=["delay", "q"]
        diff         (T, Q)    ΔI/I = <I_on> / <I_off> - 1 per delay bin (dimensionless)
        diff_errors  (T, Q)    its bootstrap standard error (absent without bootstrap)
        delay        (T,)      mean corrected delay of the bin's laser-on shots, fs
        q            (Q,)      momentum transfer, 1/angstrom
        counts       (T,)      laser-on shots per bin
        edges        (T, 2)    lower and upper delay edge of each bin, fs
        off          (T, Q)    the laser-off reference of each bin (normalised units)
    /entry/reduction           [NXprocess] attrs n_off, outside_bins, empty_bins, settings (JSON)
        rejected               [NXcollection] attrs total and one per reason (timetool, nan, ...): shots rejected
        dropped      (K, 2)    edges of the delay bins dropped for want of shots, fs
    /entry/dsm                 [NXdata] signal="dsm", axes=["delay", "q"]  (only with a molecule)
        dsm, dsm_errors (T, Q) ΔsM = q ΔI/I I_tot/I_at, 1/angstrom; attrs molecule, probe, energy_kev, baseline
        delay, q
    /entry/pdf                 [NXdata] signal="pdf", axes=["delay", "r"]  (only with a molecule)
        pdf, pdf_errors (T, R) ΔPDF = ∫ ΔsM sin(qr) exp(-k q²) dq, 1/angstrom^2; attrs damping, fill_low_q
        delay, r (R,) angstrom
    /entry/onset               [NXdata] signal="signal", axes=["delay"]  (only with an onset fit)
        signal, signal_errors (T,)  the signal fitted (mean ΔI/I over q_min..q_max); attrs model, q_min, q_max,
        delay                       t0, width, amplitude, offset, tau (fs or signal units) and each with
                                    _error, chi2, dof, error_scale (the errors' factor √(χ²/dof), or 1)

Errors of ΔsM are the bootstrap errors of ΔI/I times the same factor; those of ΔPDF are propagated through the
(linear) transform assuming independent q points.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields

import numpy as np

from .._version import __version__
from .fit import OnsetFit
from .run import REASONS, Reduced

__all__ = ["ReducedFile", "read_reduced", "write_reduced"]

@dataclass
class ReducedFile(Reduced):
    """A :class:`~xstructure.experiment.run.Reduced` with what ``xstructure reduce`` adds: ΔsM, ΔPDF, the onset.

    The fields of :class:`~xstructure.experiment.run.Reduced` come first; everything else is optional.

    Parameters
    ----------
    dsm, dsm_sigma : numpy.ndarray or None
        (T, Q) ΔsM (Å⁻¹) and its error.
    r : numpy.ndarray or None
        (R,) distances of ``pdf``, Å.
    pdf, pdf_sigma : numpy.ndarray or None
        (T, R) ΔPDF (Å⁻²) and its error (independent q points assumed).
    molecule : str or None
        The reactant of ΔsM (a name, SMILES or file as given).
    probe : str or None
        ``"xray"`` or ``"electron"``.
    energy_kev : float or None
        Electron energy of the IAM patterns, keV.
    damping : float or None
        k of the ΔPDF window exp(−k q²), Å².
    fill_low_q : str or None
        How ΔsM was extended to q = 0 in the ΔPDF (None or ``"zero"``).
    baseline : int or None
        Degree of the polynomial subtracted from ΔsM (None: none).
    onset : OnsetFit or None
        The fit of time zero and the instrument response.
    onset_q_range : tuple or None
        (qmin, qmax) of the onset signal, Å⁻¹.
    onset_error_scale : float or None
        The factor √(χ²/dof) by which the onset's errors were scaled (1: not scaled).
    sources : list
        The input files.
    """

    dsm: np.ndarray | None = None
    dsm_sigma: np.ndarray | None = None
    r: np.ndarray | None = None
    pdf: np.ndarray | None = None
    pdf_sigma: np.ndarray | None = None
    molecule: str | None = None
    probe: str | None = None
    energy_kev: float | None = None
    damping: float | None = None
    fill_low_q: str | None = None
    baseline: int | None = None
    onset: OnsetFit | None = None
    onset_q_range: tuple | None = None
    onset_error_scale: float | None = None
    sources: list | None = None

    @classmethod
    def of(cls, reduced: Reduced, **extras) -> ReducedFile:
        """A :class:`ReducedFile` holding ``reduced`` (not copied) and the given extras.

        Parameters
        ----------
        reduced : Reduced
            The reduction.
        **extras
            Any of the fields of this class beyond those of :class:`~xstructure.experiment.run.Reduced`.

        Returns
        -------
        ReducedFile
        """
        base = {f.name: getattr(reduced, f.name) for f in fields(Reduced)}
        if isinstance(reduced, ReducedFile):
            base.update({f.name: getattr(reduced, f.name) for f in fields(cls) if f.name not in base})
        base.update(extras)
        return cls(**base)


def _json(obj) -> str:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.dumps(obj, default=default)


def _dataset(g, name, data, units=None, long_name=None):
    d = g.create_dataset(name, data=data)
    if units is not None:
        d.attrs["units"] = units
    if long_name is not None:
        d.attrs["long_name"] = long_name
    return d


def _nxdata(parent, name, signal, axes):
    g = parent.create_group(name)
    g.attrs["NX_class"] = "NXdata"
    g.attrs["signal"] = signal
    g.attrs["axes"] = list(axes)
    for k, a in enumerate(axes):
        g.attrs[f"{a}_indices"] = k
    return g


def write_reduced(path, data) -> None:
    """Write reduced pump-probe data in the layout of this module (the file is overwritten).

    Parameters
    ----------
    path : str or os.PathLike
        Output HDF5 file.
    data : Reduced or ReducedFile
        The reduction (:meth:`PumpProbe.reduce <xstructure.experiment.run.PumpProbe.reduce>`), with ΔsM, ΔPDF and
        the onset fit when it is a :class:`ReducedFile` that holds them.

    Raises
    ------
    ValueError
        Arrays whose shapes do not match the delay and q axes.
    """
    import h5py  # loaded on use: keeps `import xstructure` fast

    T, Q = np.shape(data.diff)
    ext = data if isinstance(data, ReducedFile) else ReducedFile.of(data)
    for name, shape in (("sigma", (T, Q)), ("off", (T, Q)), ("dsm", (T, Q)), ("dsm_sigma", (T, Q))):
        v = getattr(ext, name)
        if v is not None and np.shape(v) != shape:
            raise ValueError(f"{name} has shape {np.shape(v)}, expected {shape} (delay bins, q points)")
    if ext.pdf is not None and (ext.r is None or np.shape(ext.pdf) != (T, len(ext.r))):
        raise ValueError(f"pdf has shape {np.shape(ext.pdf)}, expected (delay bins, len(r)) = ({T}, "
                         f"{None if ext.r is None else len(ext.r)})")
    delay = np.asarray(ext.delay, dtype=np.float64)
    q = np.asarray(ext.q, dtype=np.float64)
    with h5py.File(os.fspath(path), "w") as f:
        f.attrs["default"] = "entry"
        f.attrs["creator"] = f"xstructure {__version__}"
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.attrs["default"] = "difference"
        e.attrs["sources"] = _json(list(ext.sources or []))
        d = _nxdata(e, "difference", "diff", ["delay", "q"])
        d.attrs["title"] = "ΔI/I per delay bin"
        _dataset(d, "diff", np.asarray(ext.diff, dtype=np.float64), "", "ΔI/I")
        if ext.sigma is not None:
            _dataset(d, "diff_errors", np.asarray(ext.sigma, dtype=np.float64), "", "bootstrap standard error of ΔI/I")
        _dataset(d, "delay", delay, "fs", "pump-probe delay (mean of the bin's laser-on shots)")
        _dataset(d, "q", q, "1/angstrom", "momentum transfer q")
        _dataset(d, "counts", np.asarray(ext.counts, dtype=np.int64), None, "laser-on shots per bin")
        _dataset(d, "edges", np.asarray(ext.edges, dtype=np.float64).reshape(T, 2), "fs", "delay bin edges")
        _dataset(d, "off", np.asarray(ext.off, dtype=np.float64), None, "laser-off reference (normalised units)")

        p = e.create_group("reduction")
        p.attrs["NX_class"] = "NXprocess"
        p.attrs["program"] = "xstructure"
        p.attrs["version"] = str(__version__)
        p.attrs["n_off"] = int(ext.n_off)
        p.attrs["outside_bins"] = int(ext.excluded.get("outside_bins", 0))
        p.attrs["empty_bins"] = int(ext.excluded.get("empty_bins", 0))
        p.attrs["settings"] = _json(ext.settings)
        rej = p.create_group("rejected")
        rej.attrs["NX_class"] = "NXcollection"
        for k in ("total", *REASONS):
            rej.attrs[k] = int(ext.rejected.get(k, 0))
        _dataset(p, "dropped", np.asarray(ext.dropped, dtype=np.float64).reshape(-1, 2), "fs",
                 "edges of the dropped (empty) delay bins")

        if ext.dsm is not None:
            s = _nxdata(e, "dsm", "dsm", ["delay", "q"])
            s.attrs["title"] = "ΔsM per delay bin"
            _dataset(s, "dsm", np.asarray(ext.dsm, dtype=np.float64), "1/angstrom", "ΔsM")
            if ext.dsm_sigma is not None:
                _dataset(s, "dsm_errors", np.asarray(ext.dsm_sigma, dtype=np.float64), "1/angstrom",
                         "standard error of ΔsM")
            _dataset(s, "delay", delay, "fs")
            _dataset(s, "q", q, "1/angstrom")
            s.attrs["molecule"] = str(ext.molecule or "")
            s.attrs["probe"] = str(ext.probe or "")
            s.attrs["energy_kev"] = np.nan if ext.energy_kev is None else float(ext.energy_kev)
            s.attrs["baseline"] = -1 if ext.baseline is None else int(ext.baseline)
        if ext.pdf is not None:
            g = _nxdata(e, "pdf", "pdf", ["delay", "r"])
            g.attrs["title"] = "ΔPDF per delay bin"
            _dataset(g, "pdf", np.asarray(ext.pdf, dtype=np.float64), "1/angstrom^2", "ΔPDF")
            if ext.pdf_sigma is not None:
                _dataset(g, "pdf_errors", np.asarray(ext.pdf_sigma, dtype=np.float64), "1/angstrom^2",
                         "standard error of ΔPDF (independent q points)")
            _dataset(g, "delay", delay, "fs")
            _dataset(g, "r", np.asarray(ext.r, dtype=np.float64), "angstrom", "distance r")
            g.attrs["damping"] = np.nan if ext.damping is None else float(ext.damping)
            g.attrs["fill_low_q"] = str(ext.fill_low_q or "none")
        if ext.onset is not None:
            o = ext.onset
            g = _nxdata(e, "onset", "signal", ["delay"])
            g.attrs["title"] = "the onset: signal per delay bin and its fit"
            _dataset(g, "signal", np.asarray(o.signal, dtype=np.float64), "", "mean ΔI/I over the q range")
            _dataset(g, "signal_errors", np.asarray(o.signal_err, dtype=np.float64), "")
            _dataset(g, "delay", np.asarray(o.delay, dtype=np.float64), "fs")
            g.attrs["model"] = o.model
            lo, hi = ext.onset_q_range if ext.onset_q_range is not None else (np.nan, np.nan)
            g.attrs["q_min"], g.attrs["q_max"] = float(lo), float(hi)
            for name in ("t0", "width", "amplitude", "offset", "tau"):
                v = getattr(o, name)
                g.attrs[name] = np.nan if v is None else float(v)
                g.attrs[f"{name}_error"] = float(o.errors.get(name, np.nan)) if v is not None else np.nan
            g.attrs["error_scale"] = 1.0 if ext.onset_error_scale is None else float(ext.onset_error_scale)
            g.attrs["chi2"] = float(o.chi2)
            g.attrs["dof"] = int(o.dof)


def _attr(obj, name, default=None):
    v = obj.attrs.get(name, default)
    if isinstance(v, bytes):
        v = v.decode()
    return v


def _none_if_nan(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def read_reduced(path) -> ReducedFile:
    """Read a file that :func:`write_reduced` (or ``xstructure reduce``) wrote.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.

    Returns
    -------
    ReducedFile
        Everything the file holds; it works wherever a :class:`~xstructure.experiment.run.Reduced` does
        (e.g. :func:`~xstructure.experiment.fit.fit_onset`, :meth:`~xstructure.experiment.run.Reduced.average`).

    Raises
    ------
    ValueError
        The file is missing, not HDF5, or not in this layout.
    """
    import h5py  # loaded on use: keeps `import xstructure` fast

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"reduced file not found: {path!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"cannot read {path!r} as HDF5 ({err})") from None
    with f:
        d = f.get("entry/difference")
        if not isinstance(d, h5py.Group) or "diff" not in d:
            raise ValueError(f"{path}: not a reduced pump-probe file (no /entry/difference/diff; "
                             f"the file has {sorted(f.keys())})")
        p = f["entry/reduction"]
        rej = p["rejected"]
        rejected = {"total": int(rej.attrs.get("total", 0))}
        rejected.update({k: int(rej.attrs.get(k, 0)) for k in REASONS})
        out = ReducedFile(
            delay=d["delay"][()], q=d["q"][()], diff=d["diff"][()],
            sigma=d["diff_errors"][()] if "diff_errors" in d else None, counts=d["counts"][()].astype(np.int64),
            off=d["off"][()], edges=d["edges"][()], rejected=rejected,
            excluded={"outside_bins": int(p.attrs.get("outside_bins", 0)),
                      "empty_bins": int(p.attrs.get("empty_bins", 0))},
            n_off=int(p.attrs.get("n_off", 0)),
            dropped=[(float(a), float(b)) for a, b in p["dropped"][()]] if "dropped" in p else [],
            settings=json.loads(_attr(p, "settings", "{}") or "{}"),
            sources=json.loads(_attr(f["entry"], "sources", "[]") or "[]"))
        s = f.get("entry/dsm")
        if s is not None:
            out.dsm = s["dsm"][()]
            out.dsm_sigma = s["dsm_errors"][()] if "dsm_errors" in s else None
            out.molecule = _attr(s, "molecule") or None
            out.probe = _attr(s, "probe") or None
            out.energy_kev = _none_if_nan(float(s.attrs.get("energy_kev", np.nan)))
            b = int(s.attrs.get("baseline", -1))
            out.baseline = None if b < 0 else b
        g = f.get("entry/pdf")
        if g is not None:
            out.pdf = g["pdf"][()]
            out.pdf_sigma = g["pdf_errors"][()] if "pdf_errors" in g else None
            out.r = g["r"][()]
            out.damping = _none_if_nan(float(g.attrs.get("damping", np.nan)))
            fill = _attr(g, "fill_low_q", "none")
            out.fill_low_q = None if fill == "none" else fill
        g = f.get("entry/onset")
        if g is not None:
            a = {k: _none_if_nan(float(g.attrs.get(k, np.nan))) for k in ("t0", "width", "amplitude", "offset", "tau")}
            errors = {k: float(g.attrs.get(f"{k}_error", np.nan)) for k in a}
            errors = {k: (0.0 if np.isnan(v) else v) for k, v in errors.items()}
            out.onset = OnsetFit(model=_attr(g, "model"), t0=a["t0"], width=a["width"], amplitude=a["amplitude"],
                                 offset=a["offset"] or 0.0, tau=a["tau"], errors=errors,
                                 chi2=float(g.attrs.get("chi2", np.nan)), dof=int(g.attrs.get("dof", 0)),
                                 delay=g["delay"][()], signal=g["signal"][()], signal_err=g["signal_errors"][()])
            lo, hi = float(g.attrs.get("q_min", np.nan)), float(g.attrs.get("q_max", np.nan))
            out.onset_q_range = None if np.isnan(lo) else (lo, hi)
            out.onset_error_scale = float(g.attrs.get("error_scale", 1.0))
    return out
