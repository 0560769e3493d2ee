"""Lazy imports of optional libraries, with a clear error naming the extra to install.

``import synarrow`` never imports torch, pandas, polars, matplotlib, cupy or tqdm.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from synarrow.errors import DependencyMissingError

__all__ = ["optional", "optional_or_error", "progress", "require"]

_EXTRAS = {
    "torch": "pip install 'synarrow[torch]'  (torch==2.13.0 on CPU machines)",
    "pandas": "pip install 'synarrow[pandas]'",
    "polars": "pip install 'synarrow[polars]'",
    "matplotlib": "pip install 'synarrow[plot]'",
    "tqdm": "pip install 'synarrow[progress]'",
    "cupy": "pip install cupy-cuda12x (on a machine with an NVIDIA GPU)",
    "deltalake": "pip install 'synarrow[delta]'",
}


def require(module: str) -> ModuleType:
    """Import an optional module or raise :class:`DependencyMissingError` saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise DependencyMissingError(
            f"this feature needs the optional package {top!r}, which is not installed",
            hint=_EXTRAS.get(top, f"pip install {top}"),
        ) from exc


def optional(module: str) -> ModuleType | None:
    """Import an optional module, or return ``None`` when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def optional_or_error(module: str) -> tuple[ModuleType | None, BaseException | None]:
    """Import an optional module: ``(module, None)``, ``(None, None)`` when it is not
    installed, or ``(None, exc)`` when it is installed but fails to import (a broken
    installation, a CUDA library that does not load), so callers can report why."""
    try:
        return importlib.import_module(module), None
    except ModuleNotFoundError:
        return None, None
    except Exception as exc:
        return None, exc


def progress(
    iterable: Any = None, *, total: int | None = None, desc: str = "", enabled: bool | None = None
) -> Any:
    """A tqdm progress bar when tqdm is installed and stderr is a terminal, else a no-op.

    ``enabled`` forces the bar on or off.
    """
    import sys

    show = sys.stderr.isatty() if enabled is None else enabled
    tqdm = optional("tqdm") if show else None
    if tqdm is None:
        return _NoBar(iterable)
    return tqdm.tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)


class _NoBar:
    """Stands in for a tqdm bar: iterates and ignores updates."""

    def __init__(self, iterable: Any) -> None:
        self._iterable = iterable

    def __iter__(self) -> Any:
        return iter(self._iterable if self._iterable is not None else ())

    def update(self, n: int = 1) -> None:
        """Ignored."""

    def close(self) -> None:
        """Ignored."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
