"""Column lineage of SQL and Polars transforms: exact where derivable, nothing otherwise."""

from __future__ import annotations

import polars as pl
import pytest

import headrace as hr
from headrace.lineage.columns.model import ColumnLineage, LineageUnavailable
from headrace.lineage.columns.nodes import InputFrame, python_lineage
from headrace.lineage.columns.sql import sql_lineage

ORDERS = pl.Schema(
    {"id": pl.Int64, "amount": pl.Float64, "customer": pl.String, "ts": pl.Datetime("us", "UTC")}
)
CUSTOMERS = pl.Schema({"customer": pl.String, "country": pl.String})


def _flat(lineage: ColumnLineage) -> dict[str, set[tuple[str, str, str]]]:
    return {
        column: {(d.dataset, d.field, t.subtype.value) for d, how in deps.items() for t in how}
        for column, deps in lineage.fields.items()
    }


def _scope(lineage: ColumnLineage) -> set[tuple[str, str, str]]:
    return {
        (d.dataset, d.field, t.subtype.value) for d, how in lineage.dataset.items() for t in how
    }


def _node(pipeline: hr.Pipeline, name: str) -> hr.Node:
    return pipeline.validate({"limit": 5}).node(name)


def _python(pipeline: hr.Pipeline, name: str, **inputs: pl.Schema) -> ColumnLineage:
    node = _node(pipeline, name)
    return python_lineage(
        node,
        {k: InputFrame(k, v) for k, v in inputs.items()},
        config={"limit": 5},
        run_id="r1",
    )


# -- SQL -------------------------------------------------------------------------------------


def test_sql_columns_through_joins_ctes_and_aggregates() -> None:
    sql = """
        WITH big AS (SELECT id, amount * 1.2 AS gross, customer FROM orders WHERE amount > 10)
        SELECT c.country, b.customer, sum(b.gross) AS total, count(*) AS n,
               max(CASE WHEN b.gross > 100 THEN 1 ELSE 0 END) AS has_large
        FROM big AS b JOIN customers AS c ON c.customer = b.customer
        GROUP BY c.country, b.customer ORDER BY total
    """
    lineage = sql_lineage(sql, {"orders": list(ORDERS), "customers": list(CUSTOMERS)})
    assert _flat(lineage) == {
        "country": {("customers", "country", "IDENTITY")},
        "customer": {("orders", "customer", "IDENTITY")},
        "total": {("orders", "amount", "AGGREGATION")},
        "has_large": {("orders", "amount", "CONDITIONAL")},
    }
    assert _scope(lineage) == {
        ("orders", "amount", "FILTER"),
        ("orders", "amount", "SORT"),
        ("orders", "customer", "JOIN"),
        ("orders", "customer", "GROUP_BY"),
        ("customers", "customer", "JOIN"),
        ("customers", "country", "GROUP_BY"),
    }


def test_sql_star_union_and_window() -> None:
    lineage = sql_lineage(
        "SELECT *, rank() OVER (PARTITION BY customer ORDER BY amount) AS r FROM orders "
        "UNION ALL SELECT *, 0 FROM orders",
        {"orders": list(ORDERS)},
    )
    flat = _flat(lineage)
    assert flat["amount"] == {("orders", "amount", "IDENTITY")}
    assert flat["r"] == {("orders", "customer", "WINDOW"), ("orders", "amount", "SORT")}


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM read_csv('x.csv')", "not an input"),
        ("SELECT * FROM somewhere_else", "not an input"),
        ("SELECT a FROM orders", "could not be resolved"),
        ("DELETE FROM orders", "not a query"),
    ],
)
def test_sql_that_cannot_be_followed_gives_no_lineage(sql: str, why: str) -> None:
    with pytest.raises(LineageUnavailable, match=why):
        sql_lineage(sql, {"orders": list(ORDERS)})


# -- Polars ---------------------------------------------------------------------------------


def test_polars_select_rename_derive_join_and_group_by() -> None:
    pipeline = hr.Pipeline("shop")

    @pipeline.source
    def orders() -> pl.DataFrame:
        return pl.DataFrame(schema=ORDERS)

    @pipeline.source
    def customers() -> pl.DataFrame:
        return pl.DataFrame(schema=CUSTOMERS)

    @pipeline.transform(config=["limit"])
    def per_country(orders: pl.LazyFrame, customers: pl.LazyFrame, limit: int) -> pl.LazyFrame:
        return (
            orders.filter(pl.col("amount") > limit)
            .join(customers, on="customer", how="left")
            .with_columns(vat=pl.col("amount") * 0.25, who=pl.col("customer"))
            .group_by("country")
            .agg(pl.col("vat").sum(), pl.len().alias("n"), pl.col("who").first())
            .sort("country")
        )

    lineage = _python(pipeline, "per_country", orders=ORDERS, customers=CUSTOMERS)
    assert _flat(lineage) == {
        "country": {("customers", "country", "IDENTITY")},
        "vat": {("orders", "amount", "AGGREGATION")},
        "who": {("orders", "customer", "AGGREGATION")},
    }
    assert _scope(lineage) == {
        ("orders", "amount", "FILTER"),
        ("orders", "customer", "JOIN"),
        ("customers", "customer", "JOIN"),
        ("customers", "country", "GROUP_BY"),
        ("customers", "country", "SORT"),
    }


def test_polars_with_columns_keeps_copied_columns_as_identity() -> None:
    pipeline = hr.Pipeline("shop")

    @pipeline.source
    def orders() -> pl.DataFrame:
        return pl.DataFrame(schema=ORDERS)

    @pipeline.transform
    def tagged(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.rename({"customer": "buyer"}).with_columns(
            size=pl.when(pl.col("amount") > 100).then(pl.lit("L")).otherwise(pl.lit("S")),
            year=pl.col("ts").dt.year(),
        )

    flat = _flat(_python(pipeline, "tagged", orders=ORDERS))
    assert flat["buyer"] == {("orders", "customer", "IDENTITY")}
    assert flat["id"] == {("orders", "id", "IDENTITY")}
    assert flat["size"] == {("orders", "amount", "CONDITIONAL")}
    assert flat["year"] == {("orders", "ts", "TRANSFORMATION")}


def _single(body: object) -> hr.Pipeline:
    pipeline = hr.Pipeline("shop")

    @pipeline.source
    def orders() -> pl.DataFrame:
        return pl.DataFrame(schema=ORDERS)

    pipeline.transform(body, name="out")  # type: ignore[arg-type]
    return pipeline


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (lambda orders: orders.collect(), "returns DataFrame"),
        (
            lambda orders: orders.with_columns(
                pl.col("amount").map_batches(lambda s: s * 2, return_dtype=pl.Float64)
            ),
            "cannot follow",
        ),
        (lambda orders: orders.map_batches(lambda df: df), "cannot follow"),
        (lambda orders: orders.collect().lazy().select("id"), "collected"),
        (lambda orders: orders.join(orders, on="id", how="right"), "Right"),
    ],
)
def test_polars_plans_that_cannot_be_followed_give_no_lineage(body: object, why: str) -> None:
    pipeline = _single(body)
    with pytest.raises(LineageUnavailable, match=why):
        _python(pipeline, "out", orders=ORDERS)


def test_dataframe_inputs_and_in_memory_inputs_give_no_lineage() -> None:
    pipeline = hr.Pipeline("shop")

    @pipeline.source(ephemeral=True)
    def orders() -> pl.DataFrame:
        return pl.DataFrame(schema=ORDERS)

    @pipeline.transform
    def eager(orders: pl.DataFrame) -> pl.DataFrame:
        return orders

    @pipeline.transform
    def lazy(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders

    with pytest.raises(LineageUnavailable, match="as a DataFrame"):
        _python(pipeline, "eager", orders=ORDERS)
    with pytest.raises(LineageUnavailable, match="in memory"):
        _python(pipeline, "lazy")
