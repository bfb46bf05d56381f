"""Helpers for testing your own pipelines with pytest (or any test runner).

>>> import polars as pl, headrace as hr
>>> from headrace.testing import run_pipeline
>>> pipeline = hr.Pipeline("t")
>>> @pipeline.transform
... def doubled(numbers: pl.LazyFrame) -> pl.LazyFrame:
...     return numbers.with_columns(pl.col("n") * 2)
>>> with run_pipeline(pipeline, sources={"numbers": pl.DataFrame({"n": [1, 2]})}) as run:
...     run.read("doubled")["n"].to_list()
[2, 4]
"""

from headrace.testing.harness import PipelineRun, assert_dataset_equal, run_pipeline

__all__ = ["PipelineRun", "assert_dataset_equal", "run_pipeline"]
