"""Column lineage: which input columns each output column of a node comes from.

:mod:`~headrace.lineage.columns.model` holds the result type, :mod:`~.sql` reads SQL with
sqlglot, :mod:`~.plan` reads Polars lazy plans, :mod:`~.nodes` handles each kind of node.
"""
