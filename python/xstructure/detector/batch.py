"""Integrating many image files into one HDF5 file of radial profiles, the work of ``xstructure integrate``.

Frames are integrated in stacks of at most :data:`FRAMES_PER_CALL` frames and about :data:`PIXELS_PER_CALL`
pixels.  A file that cannot be read, or whose frames do not match the detector, is left out whole: rows
already written for it are taken back, the error is reported, and the other files are still integrated.
The output is written to ``OUT.partial`` and renamed at the end, so a failed run leaves an older output
intact.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .integrator import Integrator
from .io import CurvesWriter, read_frames

__all__ = ["integrate_files", "BatchResult", "read_mask", "FRAMES_PER_CALL", "PIXELS_PER_CALL"]

PIXELS_PER_CALL = 1 << 25
FRAMES_PER_CALL = 32


@dataclass
class BatchResult:
    """What :func:`integrate_files` did.

    Attributes
    ----------
    frames : int
        Frames integrated and written.
    files : int
        Files given.
    failed : list of str
        Files left out (their errors were reported).
    out : str
        The output file (absent when no frame was integrated).
    """

    frames: int
    files: int
    failed: list = field(default_factory=list)
    out: str = ""


def read_mask(path: str) -> np.ndarray:
    """A mask image as a 2D array.

    Parameters
    ----------
    path : str
        Any format :func:`~xstructure.detector.io.read_frames` reads (its first frame is used); non-zero pixels
        are left out of the integration.

    Returns
    -------
    numpy.ndarray
        (n1, n2) mask.

    Raises
    ------
    ValueError
        An unreadable file.
    """
    with read_frames(path) as m:
        if len(m) != 1:
            raise ValueError(f"mask {path} holds {len(m)} frames; expected one")
        return np.array(m[0])


def integrate_files(images, integrator: Integrator, out: str, *, dataset: str | None = None,
                    settings: dict | None = None, progress: bool = False, report=None) -> BatchResult:
    """Integrate every frame of every file in ``images`` into the HDF5 file ``out``.

    Parameters
    ----------
    images : list of str
        Image files (TIFF, EDF, CBF, HDF5, .npy, .npz, ...), integrated in order.
    integrator : Integrator
        The detector's integrator; every frame must have its geometry's shape.
    out : str
        Output HDF5 file (the layout of :class:`~xstructure.detector.CurvesWriter`).
    dataset : str, optional
        HDF5 dataset of the frames.
    settings : dict, optional
        Stored as root attributes of the output (the options of the run).
    progress : bool
        A progress bar on stderr.
    report : callable, optional
        ``report(message)`` for each file left out (default: print to stderr).

    Returns
    -------
    BatchResult
    """
    from tqdm import tqdm  # loaded on use: keeps `import xstructure` fast

    geometry = integrator.geometry
    shape = geometry.shape
    per_call = max(1, min(FRAMES_PER_CALL, PIXELS_PER_CALL // (shape[0] * shape[1])))
    tmp = out + ".partial"
    writer = CurvesWriter(tmp, integrator.radial, integrator.unit, geometry,
                          with_sigma=integrator.error_model is not None, settings=settings or {})
    pending = []  # (frame, source, file number) not yet integrated
    failed = []
    bar = tqdm(total=len(images), unit="frame", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    say = report or (lambda msg: tqdm.write(f"xstructure: error: {msg}", file=sys.stderr))

    def flush():
        if not pending:
            return
        res = integrator.integrate(np.stack([p[0] for p in pending]))
        writer.append(res.intensity, res.sigma, res.count, [p[1] for p in pending])
        bar.update(len(pending))
        pending.clear()

    n_known = n_ok = 0  # frames in, and number of, the files read so far
    try:
        for i, path in enumerate(images):
            start = len(writer) + len(pending)  # this file's first row
            try:
                with read_frames(path, dataset) as ff:
                    if ff.frame_shape != shape:
                        raise ValueError(f"{path}: frames are {ff.frame_shape[0]} x {ff.frame_shape[1]} pixels, "
                                         f"the detector {shape[0]} x {shape[1]}")
                    mean = (n_known + len(ff)) / (n_ok + 1)  # frames per good file so far: estimate the total
                    bar.total = n_known + len(ff) + round(mean * (len(images) - i - 1))
                    bar.refresh()
                    for k in range(len(ff)):
                        frame = ff[k]
                        if not np.isfinite(frame).any():
                            raise ValueError(f"{ff.source(k)}: the frame has no finite pixel (all NaN or inf)")
                        if pending and frame.dtype != pending[-1][0].dtype:
                            flush()
                        pending.append((frame, ff.source(k), i))
                        if len(pending) >= per_call:
                            flush()
                    n_known, n_ok = n_known + len(ff), n_ok + 1
            except ValueError as exc:  # this file is left out: its frames, integrated or not, are taken back
                failed.append(path)
                rest = len(images) - i - 1
                bar.total = max(bar.n, n_known + (round(n_known / n_ok * rest) if n_ok else rest))
                say(str(exc))
                pending[:] = [p for p in pending if p[2] != i]
                if len(writer) > start:
                    bar.update(start - len(writer))
                    writer.truncate(start)
        flush()
        bar.total = bar.n
    finally:  # an exception (Ctrl-C) leaves the .partial file behind
        bar.close()
        writer.close()
    n = len(writer)
    if n:
        os.replace(tmp, out)
    else:
        os.remove(tmp)
    return BatchResult(frames=n, files=len(images), failed=failed, out=out)
