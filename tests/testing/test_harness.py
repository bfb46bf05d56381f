import polars as pl
import pytest

import headrace as hr
from headrace.errors import RunFailedError
from headrace.testing import assert_dataset_equal, run_pipeline


def _pipeline() -> hr.Pipeline:
    pipeline = hr.Pipeline("shop")

    @pipeline.source
    def orders() -> pl.LazyFrame:
        raise OSError("the real source is not reachable from tests")

    @pipeline.transform
    def totals(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.group_by("user").agg(pl.col("amount").sum())

    return pipeline


def test_sources_are_replaced_by_in_memory_frames_and_reruns_hit_the_cache() -> None:
    orders = pl.DataFrame({"user": ["a", "a", "b"], "amount": [1, 2, 5]})
    with run_pipeline(_pipeline(), sources={"orders": orders}) as run:
        expected = pl.DataFrame({"user": ["a", "b"], "amount": [3, 5]})
        assert_dataset_equal(run.project, "totals", expected)
        again = run.rerun()
        assert again.record("totals").cache_hit


def test_a_failed_run_raises_with_the_node_named() -> None:
    with pytest.raises(RunFailedError, match="node orders: OSError"):
        run_pipeline(_pipeline())


def test_check_false_returns_the_failed_run_and_the_folder_is_removed() -> None:
    run = run_pipeline(_pipeline(), check=False)
    folder = run.project.root
    assert not run.result.ok
    run.close()
    assert not folder.exists()


def test_assert_dataset_equal_reports_differences() -> None:
    orders = pl.DataFrame({"user": ["a"], "amount": [1]})
    with (
        run_pipeline(_pipeline(), sources={"orders": orders}) as run,
        pytest.raises(AssertionError),
    ):
        assert_dataset_equal(run.project, "totals", pl.DataFrame({"user": ["a"], "amount": [2]}))
