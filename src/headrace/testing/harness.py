"""Run a pipeline in a throw-away project and look at what it wrote."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from headrace.core.fingerprint import content_hash
from headrace.core.pipeline import Pipeline
from headrace.engines.batch.run import RunResult
from headrace.project.project import Project

__all__ = ["PipelineRun", "assert_dataset_equal", "run_pipeline"]


@dataclass
class PipelineRun:
    """A finished test run: its result and the project it ran in."""

    result: RunResult
    project: Project
    pipeline: Pipeline
    """The pipeline that ran (with the in-memory sources, when some were given)."""
    _owned_dir: Path | None = None

    def read(self, dataset: str, version: int | None = None) -> pl.DataFrame:
        """A dataset the run (or an earlier one in the same project) wrote."""
        return self.project.read(dataset, version)

    def output(self, node: str) -> Any:
        """The in-memory value of an ephemeral leaf node."""
        return self.result.outputs[node]

    def rerun(self, pipeline: Pipeline | None = None, **options: Any) -> RunResult:
        """Run again in the same project (to test caching, partitions, ...).

        Without ``pipeline`` the same one runs again, with the same in-memory sources.
        """
        return self.project.run(pipeline or self.pipeline, **options)

    def close(self) -> None:
        """Release the project (and delete it when run_pipeline created it)."""
        self.project.close()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> PipelineRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_pipeline(
    pipeline: Pipeline,
    *,
    sources: Mapping[str, pl.DataFrame] | None = None,
    project_dir: Path | str | None = None,
    config: Mapping[str, Any] | None = None,
    partitions: Sequence[str] = (),
    check: bool = True,
) -> PipelineRun:
    """Run ``pipeline`` in a temporary project and return the run for inspection.

    ``sources`` feeds in-memory frames to inputs that no node of ``pipeline`` produces (or
    replaces source nodes of the same name), so a transform can be tested on hand-made data.
    With ``check`` (default) a failed run raises :class:`~headrace.errors.RunFailedError`.
    Use it as a context manager so the temporary project is removed afterwards.
    """
    owned = None
    if project_dir is None:
        owned = Path(tempfile.mkdtemp(prefix="headrace-test-"))
        project_dir = owned
    project = Project.create(project_dir, name=pipeline.name)
    runnable = _with_sources(pipeline, sources or {})
    result = project.run(runnable, config=config, partitions=partitions)
    run = PipelineRun(result, project, runnable, owned)
    if check:
        try:
            result.raise_for_status()
        except Exception:
            run.close()
            raise
    return run


def _with_sources(pipeline: Pipeline, sources: Mapping[str, pl.DataFrame]) -> Pipeline:
    if not sources:
        return pipeline
    copy = Pipeline(pipeline.name, description=pipeline.description)
    for name, frame in sources.items():
        copy.source(_constant(frame), name=name, cache=True, version=content_hash(frame))
    for node in pipeline.nodes.values():
        if node.name not in sources:
            copy._add(node)
    return copy


def _constant(frame: pl.DataFrame) -> Any:
    def source() -> pl.LazyFrame:
        return frame.lazy()

    source.__doc__ = "In-memory test data."
    return source


def assert_dataset_equal(
    project: Project,
    dataset: str,
    expected: pl.DataFrame,
    *,
    version: int | None = None,
    check_row_order: bool = False,
) -> None:
    """Assert that a stored dataset equals ``expected`` (row order ignored by default)."""
    actual = project.read(dataset, version)
    if not check_row_order:
        actual = actual.sort(actual.columns)
        expected = expected.sort(expected.columns)
    assert_frame_equal(actual, expected, check_row_order=True)
