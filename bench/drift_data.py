"""The drift benchmark's data: reference and current frames with planted shifts (seeded).

20 columns (12 numeric, 8 categorical); 5 of them shifted in the current data by about 5 %,
one by a negligible 1 % of a standard deviation (``tiny_shift_normal``: at 1 M rows a side a
p-value calls it significant; it should not be flagged), the other 14 drawn again from the
same distribution. The shifted ones:

- ``shift_scale_normal``: values moved 5 % further from the mean (``mu + 1.05 (x - mu)``);
- ``shift_loc_normal``: shifted by 5 % of a standard deviation;
- ``shift_scale_lognormal``: multiplied by 1.05 (a positive quantity 5 % larger);
- ``shift_cat_share``: the first of 5 categories from 30 % to 35 % of the rows;
- ``shift_bool``: true from 50 % to 55 %.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Evidently venv imports the column lists only (no Polars there)
    import polars as pl

SHIFTED = (
    "shift_scale_normal",
    "shift_loc_normal",
    "shift_scale_lognormal",
    "shift_cat_share",
    "shift_bool",
)
NUMERIC = (
    "tiny_shift_normal",
    "lognormal",
    "uniform",
    "exponential",
    "poisson_int",
    "wide_int",
    "bimodal",
    "normal_nulls",
    "gamma_f32",
    "shift_scale_normal",
    "shift_loc_normal",
    "shift_scale_lognormal",
)
CATEGORICAL = (
    "flag",
    "five",
    "zipf50",
    "uniform1000",
    "enum12",
    "eight_nulls",
    "shift_cat_share",
    "shift_bool",
)


def frame(rows: int, seed: int, *, current: bool) -> pl.DataFrame:
    """One side's rows; ``current=True`` plants the shifts."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    k = 1.05 if current else 1.0
    five = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])
    share = (
        np.array([0.35, 0.25, 0.2, 0.12, 0.08])
        if current
        else np.array([0.3, 0.27, 0.2, 0.14, 0.09])
    )
    zipf = 1 / np.arange(1, 51)
    nulls = rng.random(rows) < 0.05
    eight = pl.Series(rng.choice(np.array([f"e{i}" for i in range(8)]), rows))
    eight = eight.scatter(np.flatnonzero(rng.random(rows) < 0.1), None)
    months = [f"m{i:02d}" for i in range(12)]
    columns = {
        "tiny_shift_normal": rng.normal(50, 10, rows) + (0.1 if current else 0.0),
        "lognormal": rng.lognormal(3, 0.8, rows),
        "uniform": rng.uniform(0, 100, rows),
        "exponential": rng.exponential(5, rows),
        "poisson_int": rng.poisson(4, rows).astype(np.int64),
        "wide_int": rng.integers(0, 100_000, rows, dtype=np.int64),
        "bimodal": np.where(
            rng.random(rows) < 0.3, rng.normal(-2, 0.5, rows), rng.normal(3, 1, rows)
        ),
        "normal_nulls": pl.Series(rng.normal(0, 1, rows)).scatter(np.flatnonzero(nulls), None),
        "gamma_f32": rng.gamma(2.0, 2.0, rows).astype(np.float32),
        "shift_scale_normal": 20 + k * (rng.normal(20, 4, rows) - 20),
        "shift_loc_normal": rng.normal(100, 15, rows) + (0.05 * 15 if current else 0.0),
        "shift_scale_lognormal": k * rng.lognormal(1, 0.5, rows),
        "flag": rng.random(rows) < 0.3,
        "five": rng.choice(five, rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
        "zipf50": rng.choice(np.array([f"z{i}" for i in range(50)]), rows, p=zipf / zipf.sum()),
        "uniform1000": rng.choice(np.array([f"u{i:04d}" for i in range(1000)]), rows),
        "enum12": pl.Series(rng.choice(np.array(months), rows)).cast(pl.Enum(months)),
        "eight_nulls": eight,
        "shift_cat_share": rng.choice(five, rows, p=share / share.sum()),
        "shift_bool": rng.random(rows) < (0.55 if current else 0.5),
    }
    return pl.DataFrame(columns)


def write(folder: Path, rows: int) -> tuple[Path, Path]:
    """Write ``reference.parquet`` and ``current.parquet`` (reused when present)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "reference.parquet", folder / "current.parquet"
    if not all(path.exists() for path in paths):
        frame(rows, 1, current=False).write_parquet(paths[0])
        frame(rows, 2, current=True).write_parquet(paths[1])
    return paths
