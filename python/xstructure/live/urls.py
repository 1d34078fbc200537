"""Source URLs: ``karabo://HOST:PORT``, ``simplon://HOST:PORT``, ``pva://PV:NAME``, ``hdf5:PATH`` (a file or a
folder; a plain path ending in .h5/.hdf5/.nxs, or an existing folder, works too)."""

from __future__ import annotations

import os

from .frames import Keys, Source

__all__ = ["SCHEMES", "open_source", "parse_source"]

SCHEMES = ("karabo", "simplon", "pva", "hdf5")


def parse_source(url: str) -> tuple[str, str]:
    """``(protocol, address)`` of a source URL, address in the form the protocol's Source takes.

    Parameters
    ----------
    url : str
        ``karabo://HOST:PORT``, ``simplon://HOST:PORT``, ``pva://PV:NAME``, ``hdf5:PATH`` or a path.

    Returns
    -------
    tuple of str

    Raises
    ------
    ValueError
        An unknown scheme or a missing host, port or name.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("give a source, e.g. karabo://127.0.0.1:4545, simplon://HOST:PORT, pva://PV:NAME or a file")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        if url.startswith("hdf5:"):
            return "hdf5", url[5:]
        if url.lower().endswith((".h5", ".hdf5", ".nxs")) or os.path.isdir(url):
            return "hdf5", url
        raise ValueError(f"cannot tell the protocol of {url!r}: write karabo://HOST:PORT, simplon://HOST:PORT, "
                         f"pva://PV:NAME or hdf5:PATH")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unknown source scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if scheme == "hdf5":
        return "hdf5", rest
    if scheme == "pva":
        if not rest:
            raise ValueError("pva:// needs a PV name, e.g. pva://13SIM1:Pva1:Image")
        return "pva", rest
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{scheme}:// needs HOST:PORT, e.g. {scheme}://127.0.0.1:4545; got {rest!r}")
    return scheme, f"tcp://{host}:{port}"


def open_source(url: str, keys: Keys | None = None, **options) -> Source:
    """The :class:`Source` for ``url`` (not yet opened).

    Parameters
    ----------
    url : str
        As for :func:`parse_source`.
    keys : Keys or None, optional
        Where the stream keeps the image and the metadata.
    **options
        Keyword arguments of the protocol's source.

    Returns
    -------
    Source
    """
    protocol, address = parse_source(url)
    if protocol == "karabo":
        from .karabo import KaraboSource as cls
    elif protocol == "simplon":
        from .simplon import SimplonSource as cls
    elif protocol == "pva":
        from .pva import PvaSource as cls
    else:
        from .hdf5 import Hdf5Source as cls
    return cls(address, keys, **options)
