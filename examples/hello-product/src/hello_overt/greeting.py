"""Composing the greeting that the command line prints."""

from __future__ import annotations

DEFAULT_NAME = "world"


def greet(name: str | None = None, *, shout: bool = False) -> str:
    """Return a greeting for ``name`` (``"world"`` when it is empty or missing)."""
    who = (name or "").strip() or DEFAULT_NAME
    text = f"Hello, {who}!"
    return text.upper() if shout else text
