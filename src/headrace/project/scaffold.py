"""``headrace init``: a new project that runs as is."""

from __future__ import annotations

import re
from pathlib import Path

from headrace.errors import ConfigError
from headrace.project.settings import SETTINGS_FILE

__all__ = ["scaffold"]

_SETTINGS = """\
[project]
name = "{name}"
pipelines = ["pipeline.py"]

[storage]
root = ".headrace"

[config]
greeting = "hello"
"""

_PIPELINE = '''\
"""The {name} pipeline: one source and one transform. Run it with `headrace run`."""

import polars as pl

import headrace as hr

pipeline = hr.Pipeline("{name}")


@pipeline.source
def events() -> pl.LazyFrame:
    """Raw events; replace with pl.scan_csv(...), pl.scan_parquet(...) and the like."""
    return pl.LazyFrame(
        {{
            "user": ["ada", "bob", "ada", "cyd"],
            "amount": [12.5, 3.0, 7.25, 40.0],
        }}
    )


@pipeline.transform(config=["greeting"])
def spend_per_user(events: pl.LazyFrame, greeting: str) -> pl.LazyFrame:
    """Total spend per user."""
    return (
        events.group_by("user")
        .agg(pl.col("amount").sum().alias("total"))
        .with_columns(message=pl.lit(greeting) + ", " + pl.col("user"))
        .sort("user")
    )
'''


def scaffold(directory: Path, *, name: str | None = None) -> list[Path]:
    """Write ``headrace.toml`` and ``pipeline.py`` into ``directory``; returns the files."""
    directory = Path(directory)
    project_name = name or re.sub(r"[^A-Za-z0-9_]", "_", directory.resolve().name) or "project"
    if not re.match(r"^[A-Za-z_]", project_name):
        project_name = f"p_{project_name}"
    files = {
        directory / SETTINGS_FILE: _SETTINGS.format(name=project_name),
        directory / "pipeline.py": _PIPELINE.format(name=project_name),
    }
    existing = [path for path in files if path.exists()]
    if existing:
        names = ", ".join(str(p) for p in existing)
        msg = f"{names} already exist(s); choose an empty folder or remove them first"
        raise ConfigError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".headrace/\n", encoding="utf-8")
    return list(files)
