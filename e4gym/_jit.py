"""numba compilation, written once: every compiled kernel of e4gym goes through :func:`njit_cached`.

Kernels are compiled on first use (importing e4gym never imports numba) with ``cache=True`` (the machine code is
kept in the module's ``__pycache__`` and loaded by later processes in a fraction of a second), falling back to a
compile per process where no cache location is writable (a read-only install). ``error_model="numpy"``: IEEE
division (inf, nan) without division checks, as NumPy computes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["lazy_kernel", "njit_cached"]


def njit_cached(fn: Callable[..., Any]) -> Any:
    """``fn`` compiled by numba (nopython mode, cached on disk where possible)."""
    import numba

    try:
        return numba.njit(cache=True, error_model="numpy")(fn)
    except RuntimeError:  # no writable cache location (read-only install and home): compile in each process
        return numba.njit(error_model="numpy")(fn)


def lazy_kernel(fn: Callable[..., Any]) -> Callable[[], Any]:
    """A function returning ``fn`` compiled (:func:`njit_cached`), compiling it on its first call only."""
    compiled: list[Any] = []

    def get() -> Any:
        if not compiled:
            compiled.append(njit_cached(fn))
        return compiled[0]

    get.__doc__ = f"``{fn.__name__}`` compiled by numba on first use (:func:`e4gym._jit.lazy_kernel`)."
    return get
