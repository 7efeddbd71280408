"""Overt: prove software integrity instead of asking to be trusted."""

__version__ = "0.1.0"
