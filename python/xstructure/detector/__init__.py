"""Detectors: geometry in pyFAI's PONI convention, 2D patterns of molecules, radial integration, frame I/O.

:class:`Geometry` gives every pixel its q, 2θ, χ, solid angle and polarisation; :func:`simulate_detector`
(also reached as ``xstructure.simulate(structures, geometry)``) makes 2D images of molecules, isotropic,
aligned or in a fixed orientation; :class:`Integrator` averages frames radially as pyFAI's ``integrate1d``
does; :func:`read_frames` and :class:`CurvesWriter` read frames and write radial profiles.
"""

from .. import scattering
from .batch import BatchResult, integrate_files, read_mask
from .geometry import RADIAL_UNITS, Geometry, RadialUnit, radial_unit
from .integrator import ERROR_MODELS, IntegrateResult, Integrator, LegendreResult, radial_average
from .io import HDF5_SUFFIXES, CurvesWriter, FrameFile, read_frames, write_curves_h5
from .patterns import ORIENTATIONS, anisotropic_components, simulate_detector

# xstructure.simulate(structures, geometry) makes detector images: the scattering layer dispatches to us.
scattering.register_target(Geometry, simulate_detector)

__all__ = ["RADIAL_UNITS", "ERROR_MODELS", "Geometry", "radial_unit", "RadialUnit", "integrate_files", "BatchResult", "read_mask", "Integrator", "IntegrateResult", "LegendreResult", "radial_average", "simulate_detector",
           "anisotropic_components", "ORIENTATIONS", "read_frames", "FrameFile", "write_curves_h5", "CurvesWriter",
           "HDF5_SUFFIXES"]
