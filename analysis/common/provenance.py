"""What a result was computed with: library versions and a digest of rajak's own source code.

Both feed content addresses (the sensitivity result cache, the rendered-figure cache) and the run
manifest, so that a change of code or of a library recomputes instead of reusing a stale result.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
from functools import lru_cache
from pathlib import Path

__all__ = ["PACKAGES", "code_digest", "package_versions"]

#: rajak and the libraries whose numbers shape the results (recorded in every manifest).
PACKAGES = ("rajak", "numpy", "pandas", "scipy", "statsmodels", "pymc", "pytensor", "bambi", "arviz",
            "arviz-base", "arviz-stats", "arviz-plots", "nutpie", "numba", "xarray", "pandera", "pydantic",
            "matplotlib")


def package_versions() -> dict[str, str | None]:
    """Versions of Python, rajak and :data:`PACKAGES` (``None`` for one not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 over the source of the ``analysis`` and ``models`` packages and :func:`package_versions`
    (computed once per process)."""
    import analysis
    import models

    h = hashlib.sha256()
    for pkg in (analysis, models):
        root = Path(pkg.__file__).parent
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    h.update(repr(sorted(package_versions().items())).encode())
    return h.hexdigest()
