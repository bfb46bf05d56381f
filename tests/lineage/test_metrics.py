"""dataQualityMetrics: free footer statistics by default, one Polars pass when asked."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from headrace.lineage.metrics import QUANTILE_SAMPLE, dataset_metrics, footer_cache_clear
from headrace.storage.datasets import DatasetStore


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    footer_cache_clear()
    return DatasetStore(tmp_path / "data")


def _write(store: DatasetStore, frame: pl.DataFrame) -> tuple[int, int]:
    written = store.write("t", frame, commit_metadata={})
    return written.version, written.bytes


FRAME = pl.DataFrame(
    {
        "x": [1, 5, None, 3],
        "y": [0.5, None, None, 2.5],
        "s": ["a", "b", "a", None],
        "when": pl.Series([None, 1, 2, 3]).cast(pl.Datetime("us", "UTC")),
        "flags": [[1], [], None, [2, 3]],
    }
)


def test_footer_metrics_read_no_data(store: DatasetStore) -> None:
    version, size = _write(store, FRAME)
    metrics = dataset_metrics(store, "t", version, rows=4, size=size, full=False)
    assert metrics["rowCount"] == 4
    assert metrics["fileCount"] == 1
    columns = metrics["columnMetrics"]
    assert columns["x"] == {"nullCount": 1, "min": 1, "max": 5}
    assert columns["y"] == {"nullCount": 2, "min": 0.5, "max": 2.5}
    assert columns["s"] == {"nullCount": 1}  # min/max are numbers only
    assert columns["when"] == {"nullCount": 1}
    assert "flags" not in columns  # nested: no per-column footer statistics


def test_full_metrics_in_one_pass(store: DatasetStore) -> None:
    version, size = _write(store, FRAME)
    columns = dataset_metrics(store, "t", version, rows=4, size=size, full=True)["columnMetrics"]
    assert columns["x"]["nullCount"] == 1
    assert columns["x"]["distinctCount"] == 4  # null counts as a value
    assert (columns["x"]["min"], columns["x"]["max"], columns["x"]["sum"]) == (1, 5, 9)
    assert columns["x"]["count"] == 3
    assert columns["x"]["quantiles"]["0.5"] == 3.0
    assert columns["s"] == {"nullCount": 1, "distinctCount": 3, "count": 3}


def test_quantiles_of_a_large_dataset_come_from_an_even_sample(store: DatasetStore) -> None:
    rows = QUANTILE_SAMPLE * 3
    version, size = _write(store, pl.DataFrame({"v": pl.arange(0, rows, eager=True)}))
    columns = dataset_metrics(store, "t", version, rows=rows, size=size, full=True)["columnMetrics"]
    median = columns["v"]["quantiles"]["0.5"]
    assert abs(median - rows / 2) / rows < 0.01
    assert abs(columns["v"]["distinctCount"] - rows) / rows < 0.05  # HyperLogLog estimate
    assert columns["v"]["max"] == rows - 1  # exact
