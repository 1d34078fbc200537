"""xstructure: X-ray and electron scattering of molecules and crystals, fast and differentiable.

The first call most users make is :func:`simulate`::

    import numpy as np, xstructure
    q = np.linspace(0.5, 12, 500)
    I = xstructure.simulate(xstructure.molecule("NMM"), q, probe="xray", signal="total")

The package follows the data's path, and this module only re-exports: structures and form factors
(:mod:`.structures`, :mod:`.factors`) → scattering and superposition (:mod:`.scattering`, :mod:`.align`) →
detectors, crystals and pools (:mod:`~xstructure.detector`, :mod:`.crystal`, :mod:`.pools`) → the torch ops
(:mod:`.ops`) → learning (:mod:`.learn`) → the command line (:mod:`.cli`).  :mod:`xstructure.ops` needs
torch and :mod:`xstructure.pools.sampling` RDKit; both load on first use, so the numpy API never needs them.
"""

from importlib import import_module as _import_module

from . import crystal, detector
from ._backend import build_info, cuda_available
from ._version import __version__
from .align import rmsd
from .crystal import powder
from .detector import Geometry, IntegrateResult, Integrator, LegendreResult, radial_average
from .factors import electron_form_factor, xray_form_factor
from .scattering import simulate
from .structures import molecule

__all__ = [
    "simulate",
    "rmsd",
    "molecule",
    "Geometry",
    "Integrator",
    "IntegrateResult",
    "LegendreResult",
    "radial_average",
    "detector",
    "crystal",
    "powder",
    "xray_form_factor",
    "electron_form_factor",
    "build_info",
    "cuda_available",
    "Pool",
    "pools",
    "sampling",
    "pool",
    "ops",
    "experiment",
    "__version__",
]

# Loaded on first use: ops needs torch (optional), pools load zarr and sampling needs RDKit (optional); experiment
# (pump-probe runs) loads scipy.
_LAZY = {"ops": ".ops", "pools": ".pools", "sampling": ".pools.sampling", "pool": ".pools.pool",
         "experiment": ".experiment"}


def __getattr__(name):
    if name in _LAZY:
        return _import_module(_LAZY[name], __name__)
    if name == "Pool":
        return _import_module(".pools", __name__).Pool
    raise AttributeError(f"module 'xstructure' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
