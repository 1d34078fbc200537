"""Time-resolved pump-probe experiments: shots → ΔI/I → ΔsM → ΔPDF, time zero, the excitation fraction and
which product was made.

:class:`PumpProbe` holds a run (one radial profile per shot, numpy or a lazy h5py/zarr dataset) and
:meth:`PumpProbe.reduce` turns it into ΔI/I per delay bin with bootstrap errors (:class:`Reduced`);
:func:`delta_sm` and :func:`delta_pdf` take it to real space; :func:`fit_onset` finds time zero and the
instrument response, :func:`fit_fraction` the excitation fraction and ranks candidate products;
:class:`RunningReduction` does the same shot by shot for live data;
:func:`simulate_pumpprobe` makes runs with a known answer; :func:`reduce_file` does all of it from a file
(``xstructure reduce``) and :func:`write_reduced` / :func:`read_reduced` keep the result in HDF5; the figures are
in :mod:`xstructure.experiment.figures`.  The user guide page (``experiment``) gives the definitions and their
sources.
"""

from .files import ReducedFile, read_reduced, write_reduced
from .fit import FractionFit, OnsetFit, fit_fraction, fit_onset, onset_model
from .invert import ProductStructure, invert_difference, product_pattern
from .run import REASONS, PumpProbe, Reduced
from .running import RunningReduction
from .signals import Difference, baseline, delta_pdf, delta_sm, iam_patterns, theoretical_difference
from .simulate import Truth, simulate_pumpprobe
from .tasks import reduce_file

__all__ = ["REASONS", "Difference", "FractionFit", "OnsetFit", "ProductStructure", "PumpProbe", "Reduced",
           "ReducedFile", "RunningReduction", "Truth", "baseline", "delta_pdf", "delta_sm", "fit_fraction", "fit_onset", "iam_patterns",
           "invert_difference", "onset_model", "product_pattern", "read_reduced", "reduce_file", "simulate_pumpprobe",
           "theoretical_difference", "write_reduced"]
