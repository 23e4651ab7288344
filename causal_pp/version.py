"""The version of causal_pp (one place: the package, the build and the results store read it)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.2.0"
