"""Crystals: unit cells, structure factors F(hkl), powder patterns, density grids, and phasing.

Structure factors and density grids come from the compiled kernels (:mod:`.structure_factors`); powder
peak lists and profiles from :mod:`.powder`; solving the phase problem without learning (charge flipping,
Pawley extraction of powder intensities, atom models refined against amplitudes) from :mod:`.phasing`.
"""

from . import powder
from .powder import WAVELENGTHS, PowderPeaks, lorentz_polarization, powder_pattern, powder_peaks, wavelength_value
from .structure_factors import (
                                FACTORS,
                                Cell,
                                as_cell,
                                density_grid,
                                grid_spec,
                                intensities,
                                save_hkl_grid,
                                structure_factors,
)

__all__ = ["FACTORS", "Cell", "as_cell", "structure_factors", "intensities", "density_grid", "grid_spec", "powder_peaks",
           "powder_pattern", "PowderPeaks", "WAVELENGTHS", "lorentz_polarization", "wavelength_value", "save_hkl_grid",
           "powder"]
