"""A consistent copy of the pipeline's state, for the live view and for anyone polling a running pipeline.

The pipeline writes its state under a lock in small pieces; :meth:`Pipeline.snapshot` copies them out into a
:class:`Snapshot`.  A reader (the browser view polls a few times a second) never holds the pipeline up for more
than that copy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["Counts", "Snapshot"]


@dataclasses.dataclass(frozen=True)
class Counts:
    """Every frame the pipeline was sent, by fate.

    ``received`` = ``processed`` + ``rejected`` + ``dropped`` + ``queued`` at any moment, and ``queued`` is 0
    once the pipeline has stopped.  ``lost`` counts frames the transport skipped before they reached the source
    (gaps in a stream's frame ids); they are part of ``dropped`` with the reason ``"transport"``.

    Attributes
    ----------
    received, processed, rejected, dropped, queued, lost : int
    rejected_by, dropped_by : dict
        Counts per reason.
    """

    received: int = 0
    processed: int = 0
    rejected: int = 0
    dropped: int = 0
    queued: int = 0
    lost: int = 0
    rejected_by: dict = dataclasses.field(default_factory=dict)
    dropped_by: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The pipeline at one moment.

    Attributes
    ----------
    time : float
        Seconds since the pipeline started.
    counts : Counts
        Frames by fate so far.
    rates : dict
        Frames per second over the last few seconds: ``{"received": r, "processed": r, "dropped": r}``.
    latency_ms : dict
        ``{"p50": ms, "p99": ms}`` frame-in to profile-out over the last frames (NaN before the first).
    frame : numpy.ndarray or None
        The latest frame, binned down to at most 256 pixels a side, float32.
    frame_id : int
        Its id (-1 before the first).
    q : numpy.ndarray
        (Q,) the radial grid, Å⁻¹.
    profile : numpy.ndarray or None
        (Q,) the latest frame's radial profile.
    average : numpy.ndarray or None
        (Q,) the running mean of all processed profiles (normalised as the reduction normalises).
    delays : numpy.ndarray
        (T,) delay-bin centres (the stream's delay unit, fs by convention).
    diff : numpy.ndarray
        (T, Q) running ΔI/I per delay bin (NaN where a bin has no laser-on shot or there is no reference yet).
    counts_on : numpy.ndarray
        (T,) laser-on shots per bin.
    n_off : int
        Laser-off shots in the reference.
    reduced : Any
        The running reduction as an :class:`xstructure.experiment.Reduced` (None until a bin has data), for
        :func:`~xstructure.experiment.delta_sm`, :func:`~xstructure.experiment.delta_pdf` and
        :func:`~xstructure.experiment.fit_onset`.
    structure : Any
        The latest inverted structure, ``(numbers, positions)`` with positions (N, 3) Å, or None without a model.
    settings : dict
        What the pipeline runs with (source, protocol, shape, npt, model, molecule, probe, energy, ...).
    """

    time: float
    counts: Counts
    rates: dict
    latency_ms: dict
    frame: np.ndarray | None
    frame_id: int
    q: np.ndarray
    profile: np.ndarray | None
    average: np.ndarray | None
    delays: np.ndarray
    diff: np.ndarray
    counts_on: np.ndarray
    n_off: int
    reduced: Any
    structure: Any
    settings: dict
