"""float64 numpy twin of the radial histogram kernel (xstructure.Integrator): numpy.histogram of the
corrected pixels per bin."""

import numpy as np

from xstructure.detector.geometry import radial_unit


def reference(image, geometry, npt, unit="q_A^-1", mask=None, weights=None):
    """numpy float64: bins over the unmasked pixels' span (pyFAI's rule), Σx / Σw and Poisson sem."""

    u = radial_unit(unit)
    x = geometry.radial(unit).ravel() / u.scale
    keep = np.ones(x.size, bool) if mask is None else ~mask.ravel().astype(bool)
    img = image.ravel().astype(np.float64)
    keep &= np.isfinite(img)
    w = np.ones(x.size) if weights is None else weights.ravel()
    lo, hi = x[keep].min(), x[keep].max() * (1 + np.finfo(np.float32).eps)
    s, edges = np.histogram(x[keep], npt, range=(lo, hi), weights=img[keep])
    n, _ = np.histogram(x[keep], npt, range=(lo, hi), weights=w[keep])
    v, _ = np.histogram(x[keep], npt, range=(lo, hi), weights=np.maximum(1, img[keep]))
    c, _ = np.histogram(x[keep], npt, range=(lo, hi))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (edges[1:] + edges[:-1]) * u.scale, s / n, np.sqrt(v) / n, c
