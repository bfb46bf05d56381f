"""The streaming engine: micro-batches over Arrow/Polars, event time, state, checkpoints.

It runs the streamable part of a pipeline (a stream-fed source node, its contract, row-level
transforms and feature views) over an unbounded source: :mod:`.planner` decides what can run
on a stream, :mod:`.operators` keep each feature view's window state, :mod:`.runtime` reads,
processes, emits and checkpoints. It never imports the batch engine; what both share
(feature-view computation) lives in :mod:`headrace.engines.compute`.
"""
