"""Argument types and options shared by the command groups."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ..learn.data import Noise

__all__ = ["DEFAULT_Q", "parse_q", "output_path", "output_file", "parse_range", "parse_two_theta", "parse_param",
           "parse_noise", "add_progress", "progress", "interrupted"]


#: The default q grid of every command that simulates patterns, in Å⁻¹.
DEFAULT_Q = "0.5:12:500"


def parse_q(text: str) -> np.ndarray:
    """A q grid from the command line.

    Parameters
    ----------
    text : str
        ``"START:STOP:N"`` (N points, both ends included, 0 ≤ START < STOP) or a comma-separated list of
        increasing values, in Å⁻¹.

    Returns
    -------
    numpy.ndarray
        (Q,) increasing q in Å⁻¹.

    Raises
    ------
    argparse.ArgumentTypeError
        Neither form, a negative q, or a grid that does not increase.
    """
    form = "expected START:STOP:N (e.g. 0.5:12:500) or a comma-separated list"
    try:
        if ":" in text:
            start, stop, n = text.split(":")
            start, stop, n = float(start), float(stop), int(n)
            if n < 1:
                raise argparse.ArgumentTypeError(f"expected N >= 1 points, got {text!r}")
            q, order = np.linspace(start, stop, n), "START must be below STOP (q increases)"
        else:
            q, order = np.array([float(v) for v in text.split(",")]), "q values must increase"
    except ValueError:
        raise argparse.ArgumentTypeError(f"{form}, got {text!r}") from None
    if not np.all(np.isfinite(q)):
        raise argparse.ArgumentTypeError(f"q must be finite, got {text!r}")
    if q.min() < 0:
        raise argparse.ArgumentTypeError(f"q must be >= 0 (q = 4π sinθ/λ in Å⁻¹), got {text!r}")
    if np.any(np.diff(q) <= 0):
        raise argparse.ArgumentTypeError(f"{order}, got {text!r}")
    return q


def output_path(text: str) -> str:
    """An output file named on the command line, checked before any work is done.

    Parameters
    ----------
    text : str
        The path.

    Returns
    -------
    str
        ``text`` unchanged.

    Raises
    ------
    argparse.ArgumentTypeError
        Its directory does not exist or is not writable, or the path is an existing directory.
    """
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: the directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: the directory {folder!r} is not writable")
    return text


def output_file(text: str) -> str:
    """An output file named on the command line: :func:`output_path`, and an existing directory is refused.

    Parameters
    ----------
    text : str
        The path.

    Returns
    -------
    str
        ``text`` unchanged.

    Raises
    ------
    argparse.ArgumentTypeError
        The path is a directory, or its directory does not exist or is not writable.
    """
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: it is a directory")
    return output_path(text)


def parse_range(text: str) -> tuple:
    """A range from the command line.

    Parameters
    ----------
    text : str
        ``"MIN:MAX"`` with MIN < MAX.

    Returns
    -------
    tuple of float
        (min, max).

    Raises
    ------
    argparse.ArgumentTypeError
        Not two numbers in increasing order.
    """
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX (e.g. 0.5:8), got {text!r}") from None
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX with MIN < MAX, got {text!r}")
    return lo, hi


def parse_two_theta(text: str) -> np.ndarray:
    """A 2θ grid from the command line.

    Parameters
    ----------
    text : str
        ``"START:STOP:N"`` in degrees, 0 ≤ START < STOP ≤ 180, N ≥ 2 (both ends included).

    Returns
    -------
    numpy.ndarray
        (N,) 2θ in degrees.

    Raises
    ------
    argparse.ArgumentTypeError
        A malformed or out-of-range grid.
    """
    try:
        start, stop, n = text.split(":")
        start, stop, n = float(start), float(stop), int(n)
        if n < 2 or not 0 <= start < stop <= 180:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--two-theta must be START:STOP:N with 0 <= START < STOP <= 180 and N >= 2 (e.g. 5:90:8501), "
            f"got {text!r}") from None
    return np.linspace(start, stop, n)


def parse_param(text: str) -> tuple:
    """A ``KEY=VALUE`` option from the command line.

    Parameters
    ----------
    text : str
        ``"KEY=VALUE"``; VALUE is read as JSON when it parses (numbers, true, lists), else as a string.

    Returns
    -------
    tuple
        (key, value).

    Raises
    ------
    argparse.ArgumentTypeError
        No ``=`` or a key that is not an identifier.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--param must be KEY=VALUE (e.g. timestep=1.0), got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_noise(text: str):
    """A noise model from the command line.

    Parameters
    ----------
    text : str
        ``"gaussian:0.005"`` (relative σ per q point), ``"poisson:1e6"`` (counts per pattern) or ``"none"``.

    Returns
    -------
    Noise
        The model.

    Raises
    ------
    argparse.ArgumentTypeError
        A malformed specification.
    """
    try:
        return Noise.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_progress(parser) -> None:
    """Add the ``--progress/--no-progress`` option to a parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The (sub-)command's parser.
    """
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")


def progress(args) -> bool:
    """Whether to show progress bars.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with ``progress``.

    Returns
    -------
    bool
        ``--progress``/``--no-progress`` when given, else whether stderr is a terminal.
    """
    return sys.stderr.isatty() if args.progress is None else args.progress


def interrupted(where: str, what: str = "finished chunks") -> int:
    """Report an interrupted command on stderr.

    Parameters
    ----------
    where : str
        The store or file that keeps the finished work.
    what : str, optional
        What is kept.

    Returns
    -------
    int
        130, the exit status of an interrupted command.
    """
    print(f"xstructure: interrupted; the {what} are kept in {where}: run the same command again to finish",
          file=sys.stderr)
    return 130
