"""Which bin each value falls in: ``numpy.searchsorted(edges, values, side="right")``, faster.

A sketch's bins are the reference's quantiles, so most values land in a few hundred narrow
bins. A binary search over 500 edges costs about 60 ns a value (branch mispredictions);
:class:`EdgeIndex` first looks the value up in a uniform grid laid over the edges (in the
value's own scale, or after ``asinh`` when the edges span orders of magnitude), then steps over
at most three edges with vectorised comparisons, and checks the answer. Values whose answer
fails the check (a grid cell crowded with edges) fall back to ``searchsorted``, so the result is
always exactly ``searchsorted``'s; only the speed depends on the data (about 4x faster on
smooth distributions).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["EdgeIndex"]

_CELLS_PER_EDGE = 8
_STEPS = 3
"""Comparisons after the grid lookup; the grid's start is one edge early (rounding slack)."""
_SMALLEST = 1e-300
"""Edge spreads below this (subnormal floats) are not scaled."""
_CROWDED = 0.25
"""Above this share of edges in crowded cells, a grid saves nothing: plain searchsorted."""

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


class EdgeIndex:
    """Bin lookup over fixed, strictly increasing ``edges``.

    ``bins(values)[i]`` is the number of edges ``<= values[i]``: 0 below the first edge,
    ``k`` for ``edges[k-1] <= v < edges[k]``, ``len(edges)`` at or above the last edge.
    ``values`` must be finite.
    """

    def __init__(self, edges: FloatArray) -> None:
        self.edges = edges
        self._grid: tuple[bool, float, float, IndexArray] | None = None
        size = len(edges)
        self._center = float(edges[size // 2]) if size else 0.0
        spread = float(edges[(3 * size) // 4] - edges[size // 4]) if size else 0.0
        # a spread of subnormal floats would overflow the scaling: use plain units then
        self._unit = spread / 2 if spread > _SMALLEST else 1.0
        if size < 4 or not np.isfinite(edges).all():
            return
        best: tuple[float, bool] | None = None
        for log_scale in (False, True):
            scaled = self._scale(edges, log_scale=log_scale)
            span = float(scaled[-1] - scaled[0])
            if not np.isfinite(span) or span <= 0:
                continue
            cells = np.floor((scaled - scaled[0]) * (_CELLS_PER_EDGE * size / span))
            _, per_cell = np.unique(cells, return_counts=True)
            crowded = float(per_cell[per_cell >= _STEPS].sum()) / size
            if best is None or crowded < best[0]:
                best = (crowded, log_scale)
        if best is None or best[0] > _CROWDED:
            return
        log_scale = best[1]
        scaled = self._scale(edges, log_scale=log_scale)
        grid = _CELLS_PER_EDGE * size
        inv = grid / float(scaled[-1] - scaled[0])
        lefts = scaled[0] + np.arange(grid) / inv
        start = np.maximum(np.searchsorted(scaled, lefts, side="left") - 1, 0)
        self._grid = (log_scale, float(scaled[0]), inv, start.astype(np.intp))

    def _scale(self, values: FloatArray, *, log_scale: bool) -> FloatArray:
        if not log_scale:
            return values
        return np.arcsinh((values - self._center) / self._unit)

    def bins(self, values: FloatArray) -> IndexArray:
        """The bin of each (finite) value; equal to ``searchsorted(edges, values, "right")``."""
        edges = self.edges
        if self._grid is None:
            return np.searchsorted(edges, values, side="right").astype(np.intp, copy=False)
        log_scale, origin, inv, start = self._grid
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            cell = (self._scale(values, log_scale=log_scale) - origin) * inv
        unusable = ~np.isfinite(cell)  # extreme values: let searchsorted answer them
        cell[unusable] = 0
        np.clip(cell, 0, len(start) - 1, out=cell)
        index = start[cell.astype(np.intp)]
        above = np.concatenate([edges, np.full(_STEPS + 1, np.inf)])
        below = np.concatenate([[-np.inf], edges])
        for _ in range(_STEPS):
            index += values >= above[index]
        wrong = (values >= above[index]) | (values < below[index]) | unusable
        if wrong.any():
            index[wrong] = np.searchsorted(edges, values[wrong], side="right")
        return index
