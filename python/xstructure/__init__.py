"""xstructure: X-ray and electron scattering of molecules and crystals, fast and differentiable.

The first call most users make is :func:`simulate`::

    import numpy as np, xstructure
    q = np.linspace(0.5, 12, 500)
    I = xstructure.simulate(xstructure.molecule("NMM"), q, probe="xray", signal="total")

PyTorch custom ops (differentiable, CPU and CUDA) live in :mod:`xstructure.ops`, imported on first use
so that the numpy API never needs torch.  Sampling (:mod:`xstructure.sampling`, needs RDKit) and pools
(:class:`xstructure.Pool`, a zarr store) are imported on first use as well.
"""

from __future__ import annotations

from importlib import import_module

from ._backend import build_info, cuda_available
from . import crystal, powder
from .align import rmsd
from .factors import electron_form_factor, xray_form_factor
from .geometry import Geometry
from .integrator import IntegrateResult, Integrator, LegendreResult, radial_average
from .scattering import simulate
from .structures import molecule

__version__ = "0.1.0"

__all__ = [
    "simulate",
    "rmsd",
    "molecule",
    "Geometry",
    "Integrator",
    "IntegrateResult",
    "LegendreResult",
    "radial_average",
    "crystal",
    "powder",
    "xray_form_factor",
    "electron_form_factor",
    "build_info",
    "cuda_available",
    "Pool",
    "sampling",
    "pool",
    "ops",
    "__version__",
]


def __getattr__(name):
    if name in ("ops", "sampling", "pool"):
        return import_module("." + name, __name__)
    if name == "Pool":
        return import_module(".pool", __name__).Pool
    raise AttributeError(f"module 'xstructure' has no attribute {name!r}")
