"""Pools: thermal geometries of a molecule (Wigner, Langevin MD, Metropolis MC on MMFF94) and their patterns,
in a chunked zarr store that resumes after an interruption (:class:`Pool`, :mod:`.sampling`)."""

from .pool import Pool

__all__ = ["Pool"]
