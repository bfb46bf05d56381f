"""Drift detection: compare data with a reference version through mergeable sketches.

Sketch the reference once when it is written, store the sketches with it, and compare any
later data against them::

    reference = sketch_frame(reference_frame)          # once; dump_sketches() to store
    result = compare(reference, current_frame)         # sketches the current data, compares
    result.drifted_columns, result.columns             # the verdicts are data

For a report, sketch the current data first and pass the sketches to both::

    current = sketch_frame(current_frame, like=reference)
    html = render_drift_report(compare(reference, current), reference, current)

Partitioned data: sketch the first partition, the others ``like=`` it, then
:func:`merge_sketches`. The decision rule, measures and thresholds are described in
:mod:`headrace.quality.drift.comparison`; the statistics (and how they equal SciPy's) in
:mod:`headrace.quality.drift.measures`.
"""

from headrace.quality.drift.comparison import DEFAULT_METHODS, THRESHOLDS, compare
from headrace.quality.drift.report import RESULT_SCHEMA, DriftResult, render_drift_report
from headrace.quality.drift.scan import sketch_frame
from headrace.quality.drift.sketch import (
    CategoricalSketch,
    ColumnSketch,
    DriftError,
    NumericSketch,
    dump_sketches,
    load_sketches,
    merge_sketches,
)

__all__ = [
    "DEFAULT_METHODS",
    "RESULT_SCHEMA",
    "THRESHOLDS",
    "CategoricalSketch",
    "ColumnSketch",
    "DriftError",
    "DriftResult",
    "NumericSketch",
    "compare",
    "dump_sketches",
    "load_sketches",
    "merge_sketches",
    "render_drift_report",
    "sketch_frame",
]
