"""The ``xstructure`` command line: one thin module per command group (parse → call one library function →
print).  :func:`main` is the entry point."""

from .main import build_parser, main, parse_q

__all__ = ["main", "build_parser", "parse_q"]
