"""Detector geometry in pyFAI's PONI convention.

A flat detector of ``shape = (n1, n2)`` pixels (rows along axis 1, "y"; columns along axis 2, "x") sits at
``dist`` metres from the sample. The point of normal incidence (PONI) is at ``(poni1, poni2)`` metres from
the detector's first corner, and the detector is tilted by the three rotations ``rot1``–``rot3`` (radians)
applied as in pyFAI (Kieffer & Karkoulis 2013; Ashiotis et al., J. Appl. Cryst. 48, 510, 2015). The laboratory
frame has z along the incident beam, y along the detector's first axis and x along its second, so that
for an untilted detector the azimuth ``chi = atan2(y, x)``.

Everything here is float64 numpy and computed once per geometry; the integrator folds what it needs into its
pixel-to-bin map.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from functools import cached_property

import numpy as np

from ..factors import electron_wavelength

__all__ = ["Geometry", "radial_unit", "RadialUnit", "RADIAL_UNITS"]

_PONI_KEYS = ("distance", "poni1", "poni2", "rot1", "rot2", "rot3")


def _positive(name, value):
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"Geometry: {name} must be a positive number, got {value!r}")
    return v


def _finite(name, value):
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"Geometry: {name} must be a finite number, got {value!r}")
    return v


@dataclasses.dataclass(frozen=True, eq=True)
class Geometry:
    """A flat detector and the probe's wavelength, in pyFAI's PONI convention (SI units: metres, radians).

    Give exactly one of ``wavelength`` (metres, as in PONI files), ``energy_kev`` (X-ray photon energy) or
    ``electron_energy_kev`` (electron kinetic energy; the relativistic de Broglie wavelength is used).

    Per-pixel arrays (shape ``shape``, float64, computed on first use and cached): :attr:`tth` (scattering angle
    2θ, rad), :attr:`chi` (azimuth, rad), :attr:`q` (Å⁻¹), :attr:`r` (distance from the beam axis, m),
    :attr:`solid_angle` (relative to the PONI pixel, cos³ α), :attr:`q_vectors` (Å⁻¹, lab frame), and
    :meth:`polarization`.

    Parameters
    ----------
    dist : float
        Sample-to-detector distance along the detector normal, m.
    poni1, poni2 : float
        The point of normal incidence, measured from the detector's first corner along axis 1 (rows, "y") and
        axis 2 (columns, "x"), m.
    pixel1, pixel2 : float
        Pixel sizes along the two axes, m.
    shape : tuple of int
        (n1, n2) pixels.
    rot1, rot2, rot3 : float, optional
        Detector rotations, rad, applied as in pyFAI.
    wavelength : float or None, optional
        Wavelength in m.
    energy_kev : float or None, optional
        X-ray photon energy in keV (λ = 12.398 Å / E).
    electron_energy_kev : float or None, optional
        Electron kinetic energy in keV.

    Raises
    ------
    ValueError
        Non-positive distances or pixel sizes, a bad shape, or not exactly one of the three wavelength options.

    See Also
    --------
    Geometry.simple, Geometry.from_poni
    """

    dist: float
    poni1: float
    poni2: float
    pixel1: float
    pixel2: float
    shape: tuple
    rot1: float = 0.0
    rot2: float = 0.0
    rot3: float = 0.0
    wavelength: float | None = None
    energy_kev: dataclasses.InitVar[float | None] = None
    electron_energy_kev: float | None = None

    def __post_init__(self, energy_kev):
        set_ = object.__setattr__
        set_(self, "dist", _positive("dist", self.dist))
        for name in ("poni1", "poni2", "rot1", "rot2", "rot3"):
            set_(self, name, _finite(name, getattr(self, name)))
        set_(self, "pixel1", _positive("pixel1", self.pixel1))
        set_(self, "pixel2", _positive("pixel2", self.pixel2))
        try:
            shape = tuple(int(n) for n in self.shape)
        except (TypeError, ValueError):
            raise ValueError(f"Geometry: shape must be two pixel counts (n1, n2), got {self.shape!r}") from None
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"Geometry: shape must be two positive pixel counts (n1, n2), got {self.shape!r}")
        set_(self, "shape", shape)
        given = [x is not None for x in (self.wavelength, energy_kev, self.electron_energy_kev)]
        if sum(given) != 1:
            raise ValueError("Geometry: give exactly one of wavelength (m), energy_kev (X-rays) or "
                             "electron_energy_kev (electrons)")
        if energy_kev is not None:
            set_(self, "wavelength", 12.398419843320026e-10 / _positive("energy_kev", energy_kev))
        elif self.electron_energy_kev is not None:
            e = _positive("electron_energy_kev", self.electron_energy_kev)
            set_(self, "electron_energy_kev", e)
            set_(self, "wavelength", electron_wavelength(e) * 1e-10)
        else:
            set_(self, "wavelength", _positive("wavelength", self.wavelength))

    # ------------------------------------------------------------------ construction and files
    @property
    def probe(self) -> str:
        """``"electron"`` when built from an electron energy, else ``"xray"``."""
        return "electron" if self.electron_energy_kev is not None else "xray"

    @property
    def wavelength_A(self) -> float:
        """The wavelength in Å."""
        return self.wavelength * 1e10

    @classmethod
    def simple(cls, shape, pixel=75e-6, dist=0.1, center=None, **kw) -> "Geometry":
        """An untilted detector with square pixels.

        Parameters
        ----------
        shape : int or tuple of int
            (n1, n2) pixels, or n for a square n × n detector.
        pixel : float, optional
            Pixel size, m.
        dist : float, optional
            Sample-to-detector distance, m.
        center : tuple of float or None, optional
            (row, column) of the beam in pixels; default: the middle of the detector.
        **kw
            ``wavelength``, ``energy_kev`` or ``electron_energy_kev`` (one of them), as for :class:`Geometry`.

        Returns
        -------
        Geometry
            The detector.
        """
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape), int(shape))
        try:
            n1, n2 = (int(n) for n in shape)
        except (TypeError, ValueError):
            raise ValueError(f"Geometry.simple: shape must be two pixel counts (n1, n2) or one count n for a square "
                             f"detector, got {shape!r}") from None
        c1, c2 = center if center is not None else (n1 / 2, n2 / 2)
        return cls(dist=dist, poni1=c1 * pixel, poni2=c2 * pixel, pixel1=pixel, pixel2=pixel, shape=(n1, n2), **kw)

    @classmethod
    def from_poni(cls, path, shape=None) -> "Geometry":
        """Read a pyFAI PONI file (versions 1–2.1).

        Parameters
        ----------
        path : str or os.PathLike
            The PONI file.
        shape : tuple of int or None, optional
            (n1, n2); needed only when the file names a detector without its ``max_shape`` (then pyFAI, if
            installed, is asked for the detector's shape).

        Returns
        -------
        Geometry
            The detector.

        Raises
        ------
        ValueError
            An unreadable file, a missing field, an unknown detector, or a detector orientation other than pyFAI's
            default (3).
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise ValueError(f"cannot read PONI file {path!r}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ValueError(f"PONI file {path!r} is not text") from None
        fields = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"PONI file {path!r}: line {line!r} is not 'key: value'")
            fields[key.strip().lower()] = value.strip()
        missing = [k for k in _PONI_KEYS if k not in fields]
        if "wavelength" not in fields:
            missing.append("wavelength")
        if missing:
            raise ValueError(f"PONI file {path!r} is missing {', '.join(k.capitalize() for k in missing)}")
        config = {}
        if "detector_config" in fields:
            try:
                config = json.loads(fields["detector_config"])
            except json.JSONDecodeError as e:
                raise ValueError(f"PONI file {path!r}: Detector_config is not JSON ({e})") from None
        for k in ("pixelsize1", "pixelsize2"):  # poni_version 1
            if k in fields:
                config.setdefault("pixel" + k[-1], fields[k])
        if int(config.get("orientation", 3)) != 3:
            raise ValueError(f"PONI file {path!r}: detector orientation {config['orientation']} is not supported "
                             "(only pyFAI's default orientation 3)")
        detector = fields.get("detector", "Detector")
        pixel1, pixel2 = config.get("pixel1"), config.get("pixel2")
        det_shape = config.get("max_shape")
        if (det_shape is None or pixel1 is None) and detector.lower() != "detector":
            try:
                import pyFAI.detectors  # optional dependency (pyFAI)

                det = pyFAI.detectors.detector_factory(detector, config or None)
                det_shape = det_shape or det.max_shape
                pixel1, pixel2 = pixel1 or det.pixel1, pixel2 or det.pixel2
            except Exception:  # noqa: BLE001 - any failure means the same thing to the user
                pass
        if shape is not None:
            det_shape = shape
        if pixel1 is None or pixel2 is None:
            raise ValueError(f"PONI file {path!r} is missing the pixel sizes (Detector_config pixel1/pixel2)")
        if det_shape is None:
            raise ValueError(f"PONI file {path!r} does not give the detector shape (Detector_config max_shape); "
                             "pass shape=(n1, n2)")
        try:
            values = {k: float(fields[k]) for k in (*_PONI_KEYS, "wavelength")}
        except ValueError as e:
            raise ValueError(f"PONI file {path!r}: {e}") from None
        return cls(dist=values["distance"], poni1=values["poni1"], poni2=values["poni2"], rot1=values["rot1"],
                   rot2=values["rot2"], rot3=values["rot3"], pixel1=float(pixel1), pixel2=float(pixel2),
                   shape=tuple(det_shape), wavelength=values["wavelength"])

    def to_poni(self, path) -> None:
        """Write a PONI file (version 2.1) that pyFAI reads back to the same geometry.

        Parameters
        ----------
        path : str or os.PathLike
            The output file (overwritten).
        """
        config = {"pixel1": self.pixel1, "pixel2": self.pixel2, "orientation": 3, "max_shape": list(self.shape)}
        lines = [
            "# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis",
            "# Written by xstructure",
            "poni_version: 2.1",
            "Detector: Detector",
            f"Detector_config: {json.dumps(config)}",
            f"Distance: {self.dist!r}",
            f"Poni1: {self.poni1!r}",
            f"Poni2: {self.poni2!r}",
            f"Rot1: {self.rot1!r}",
            f"Rot2: {self.rot2!r}",
            f"Rot3: {self.rot3!r}",
            f"Wavelength: {self.wavelength!r}",
        ]
        with open(os.fspath(path), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def replace(self, **changes) -> "Geometry":
        """A copy with some fields changed.

        Parameters
        ----------
        **changes
            Field values, as for :class:`Geometry`; giving ``energy_kev`` or ``electron_energy_kev`` replaces the
            wavelength.

        Returns
        -------
        Geometry
            The new geometry.
        """
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if "energy_kev" in changes or "electron_energy_kev" in changes:
            kw["wavelength"] = None
            kw["electron_energy_kev"] = None
        kw.update(changes)
        return Geometry(**kw)

    # ------------------------------------------------------------------ per-pixel arrays
    def _detector_plane(self):
        """Pixel-centre offsets from the PONI in the detector plane (m), each shaped ``shape``."""
        n1, n2 = self.shape
        p1 = self.pixel1 * (np.arange(n1, dtype=np.float64) + 0.5) - self.poni1
        p2 = self.pixel2 * (np.arange(n2, dtype=np.float64) + 0.5) - self.poni2
        return np.broadcast_to(p1[:, None], self.shape), np.broadcast_to(p2[None, :], self.shape)

    @cached_property
    def positions(self) -> np.ndarray:
        """Lab-frame pixel-centre positions (x, y, z) in metres, shape ``shape + (3,)``; z along the beam."""
        p1, p2 = self._detector_plane()
        c1, c2, c3 = math.cos(self.rot1), math.cos(self.rot2), math.cos(self.rot3)
        s1, s2, s3 = math.sin(self.rot1), math.sin(self.rot2), math.sin(self.rot3)
        L = self.dist
        t1 = p1 * (c2 * c3) + p2 * (c3 * s1 * s2 - c1 * s3) - L * (c1 * c3 * s2 + s1 * s3)
        t2 = p1 * (c2 * s3) + p2 * (c1 * c3 + s1 * s2 * s3) - L * (-c3 * s1 + c1 * s2 * s3)
        t3 = p1 * s2 - p2 * (c2 * s1) + L * (c1 * c2)
        out = np.stack([t2, t1, t3], axis=-1)
        out.setflags(write=False)
        return out

    def _frozen(self, a):
        a = np.ascontiguousarray(a, dtype=np.float64)
        a.setflags(write=False)
        return a

    @cached_property
    def tth(self) -> np.ndarray:
        """Scattering angle 2θ (rad) at each pixel centre."""
        x, y, z = np.moveaxis(self.positions, -1, 0)
        return self._frozen(np.arctan2(np.sqrt(x * x + y * y), z))

    @cached_property
    def chi(self) -> np.ndarray:
        """Azimuth χ = atan2(y, x) (rad, in (−π, π]) at each pixel centre, pyFAI's convention."""
        x, y, _ = np.moveaxis(self.positions, -1, 0)
        return self._frozen(np.arctan2(y, x))

    @cached_property
    def q(self) -> np.ndarray:
        """Momentum transfer |q| = 4π sin θ / λ (Å⁻¹) at each pixel centre."""
        return self._frozen(self._q_nm / 10.0)

    @cached_property
    def _q_nm(self) -> np.ndarray:
        return 4.0e-9 * np.pi * np.sin(self.tth / 2.0) / self.wavelength

    @cached_property
    def r(self) -> np.ndarray:
        """Distance of each pixel centre from the beam axis (m), pyFAI's ``r``: sqrt(x² + y²)."""
        x, y, _ = np.moveaxis(self.positions, -1, 0)
        return self._frozen(np.sqrt(x * x + y * y))

    @cached_property
    def q_vectors(self) -> np.ndarray:
        """Momentum-transfer vectors q = k (ŝ − ẑ) (Å⁻¹) in the lab frame, shape ``shape + (3,)``."""
        pos = self.positions
        s = pos / np.linalg.norm(pos, axis=-1, keepdims=True)
        s[..., 2] -= 1.0
        return self._frozen(s * (2 * np.pi / self.wavelength_A))

    @cached_property
    def solid_angle(self) -> np.ndarray:
        """Solid angle of each pixel relative to a pixel at the PONI: cos³ α, α the angle of incidence
        on the detector (pyFAI's ``solidAngleArray``)."""
        p1, p2 = self._detector_plane()
        return self._frozen((self.dist / np.sqrt(self.dist**2 + p1 * p1 + p2 * p2)) ** 3)

    def solid_angle_sr(self) -> np.ndarray:
        """Absolute solid angle (sr) of each pixel: pixel area · cos³ α / dist²."""
        return self.solid_angle * (self.pixel1 * self.pixel2 / self.dist**2)

    def polarization(self, factor: float = 0.99, axis_offset: float = 0.0) -> np.ndarray:
        """X-ray polarisation factor P at each pixel (the measured intensity is I·P).

        P = ½ [1 + cos²2θ − factor · cos 2(χ + offset) · sin²2θ].

        Parameters
        ----------
        factor : float, optional
            pyFAI's polarisation factor: +1 for a beam linearly polarised along x (horizontal, as at most
            synchrotrons and XFELs), −1 along y, 0 unpolarised.
        axis_offset : float, optional
            Rotation of the polarisation plane from x, rad.

        Returns
        -------
        numpy.ndarray
            (n1, n2) float64, dimensionless.
        """
        f = float(factor)
        if not math.isfinite(f) or abs(f) > 1:
            raise ValueError(f"polarization factor must lie in [-1, 1], got {factor!r}")
        c2 = np.cos(self.tth) ** 2
        return 0.5 * (1.0 + c2 - f * np.cos(2.0 * (self.chi + float(axis_offset))) * (1.0 - c2))

    def radial(self, unit: str) -> np.ndarray:
        """Per-pixel radial coordinate in a unit of :data:`RADIAL_UNITS`.

        Parameters
        ----------
        unit : str
            ``"q_A^-1"``, ``"q_nm^-1"``, ``"2th_deg"``, ``"2th_rad"``, ``"r_mm"`` or ``"r_m"``.

        Returns
        -------
        numpy.ndarray
            (n1, n2) float64 in ``unit``.
        """
        u = radial_unit(unit)
        return self._radial_internal(u) * u.scale

    def _radial_internal(self, u: "RadialUnit") -> np.ndarray:
        """The radial coordinate in pyFAI's internal unit (nm⁻¹, rad or m), in which bins are laid out."""
        return getattr(self, u.attr)

    def __repr__(self):
        probe = (f"electron_energy_kev={self.electron_energy_kev:g}" if self.electron_energy_kev is not None
                 else f"wavelength={self.wavelength:.6g}")
        return (f"Geometry(dist={self.dist:g}, poni1={self.poni1:g}, poni2={self.poni2:g}, rot1={self.rot1:g}, "
                f"rot2={self.rot2:g}, rot3={self.rot3:g}, pixel1={self.pixel1:g}, pixel2={self.pixel2:g}, "
                f"shape={self.shape}, {probe})")


@dataclasses.dataclass(frozen=True)
class RadialUnit:
    """A radial unit of integration, in pyFAI's names.

    Parameters
    ----------
    name : str
        pyFAI's name, e.g. ``"q_A^-1"``.
    attr : str
        The :class:`Geometry` attribute with the per-pixel values in pyFAI's internal unit (nm⁻¹, rad or m).
    scale : float
        Factor from the internal unit to this unit.
    label : str
        Axis label, e.g. ``"q (Å⁻¹)"``.
    symbol : str
        The unit alone, e.g. ``"Å⁻¹"``.
    """

    name: str     # pyFAI's name, e.g. 'q_A^-1'
    attr: str     # Geometry attribute with the per-pixel values in pyFAI's internal unit
    scale: float  # factor from the internal unit to the user's unit
    label: str    # axis label, e.g. 'q (Å⁻¹)'
    symbol: str   # the unit alone, e.g. 'Å⁻¹'


RADIAL_UNITS = {
    "q_A^-1": RadialUnit("q_A^-1", "_q_nm", 0.1, "q (Å⁻¹)", "Å⁻¹"),
    "q_nm^-1": RadialUnit("q_nm^-1", "_q_nm", 1.0, "q (nm⁻¹)", "nm⁻¹"),
    "2th_deg": RadialUnit("2th_deg", "tth", 180.0 / math.pi, "2θ (°)", "deg"),
    "2th_rad": RadialUnit("2th_rad", "tth", 1.0, "2θ (rad)", "rad"),
    "r_mm": RadialUnit("r_mm", "r", 1000.0, "r (mm)", "mm"),
    "r_m": RadialUnit("r_m", "r", 1.0, "r (m)", "m"),
}


def radial_unit(unit) -> RadialUnit:
    """The :class:`RadialUnit` of a name.

    Parameters
    ----------
    unit : str
        One of ``"q_A^-1"``, ``"q_nm^-1"``, ``"2th_deg"``, ``"2th_rad"``, ``"r_mm"``, ``"r_m"``.

    Returns
    -------
    RadialUnit
        The unit.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones).
    """
    key = str(unit)
    if key not in RADIAL_UNITS:
        raise ValueError(f"unknown radial unit {unit!r}; choose one of {', '.join(RADIAL_UNITS)}")
    return RADIAL_UNITS[key]
