import polars as pl
import pytest

import headrace as hr
from headrace.core.node import BindingKind, NodeKind
from headrace.errors import (
    CycleError,
    DuplicateNodeError,
    MissingConfigError,
    PipelineError,
    UnknownInputError,
)


def test_decorators_return_the_plain_function() -> None:
    pipeline = hr.Pipeline("p")

    @pipeline.transform
    def double(x: pl.LazyFrame) -> pl.LazyFrame:
        return x.with_columns(pl.col("n") * 2)

    frame = double(pl.LazyFrame({"n": [1]})).collect()
    assert frame["n"].to_list() == [2]
    assert pipeline.nodes["double"].kind is NodeKind.TRANSFORM


def test_parameters_bind_to_inputs_config_and_context() -> None:
    pipeline = hr.Pipeline("p")

    @pipeline.transform(inputs={"left": "a"}, config=["limit"])
    def joined(left, b, limit, context, scale=2):  # type: ignore[no-untyped-def]
        return left

    kinds = {b.parameter: (b.kind, b.source) for b in pipeline.nodes["joined"].bindings}
    assert kinds == {
        "left": (BindingKind.INPUT, "a"),
        "b": (BindingKind.INPUT, "b"),
        "limit": (BindingKind.CONFIG, "limit"),
        "context": (BindingKind.CONTEXT, "context"),
        "scale": (BindingKind.CONFIG, "scale"),
    }
    assert pipeline.nodes["joined"].inputs == ("a", "b")


def test_unknown_input_names_the_node_and_suggests() -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda: None, name="flights")
    pipeline.transform(lambda flight: flight, name="clean")
    with pytest.raises(UnknownInputError, match=r"node 'clean' takes input 'flight'.*'flights'"):
        pipeline.validate()


def test_cycle_is_reported_with_its_path() -> None:
    pipeline = hr.Pipeline("p")
    pipeline.transform(lambda c: c, name="a")
    pipeline.transform(lambda a: a, name="b")
    pipeline.transform(lambda b: b, name="c")
    with pytest.raises(CycleError, match=r"cycle: .*a.*b.*c"):
        pipeline.validate()


def test_duplicate_names_are_refused_at_declaration() -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda: None, name="a")
    with pytest.raises(DuplicateNodeError, match="already has a node named 'a'"):
        pipeline.transform(lambda: None, name="a")


def test_missing_config_names_node_key_and_fix() -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda path: None, name="read", config=["path"])
    with pytest.raises(
        MissingConfigError, match=r"node 'read' needs config value 'path'.*\[config\]"
    ):
        pipeline.validate()
    assert pipeline.validate({"path": "x.csv"}).node("read").config_keys == ("path",)


def test_source_with_inputs_is_refused() -> None:
    pipeline = hr.Pipeline("p")
    with pytest.raises(PipelineError, match="source node 'bad' takes inputs"):
        pipeline.source(lambda other: other, name="bad")


@pytest.mark.parametrize("name", ["1abc", "has space", "dash-ed", ""])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(PipelineError, match="not a valid identifier"):
        hr.Pipeline("p").source(lambda: None, name=name or "-")


def test_unknown_option_is_refused() -> None:
    with pytest.raises(PipelineError, match="unknown node option"):
        hr.Pipeline("p").transform(lambda: None, name="a", retires=3)


def test_sql_inputs_are_found_by_the_parser() -> None:
    pipeline = hr.Pipeline("p")
    pipeline.sql("report", "SELECT a.x FROM flights a JOIN weather w ON a.k = w.k")
    assert set(pipeline.nodes["report"].inputs) == {"flights", "weather"}


def test_bad_sql_is_refused_at_declaration() -> None:
    with pytest.raises(PipelineError, match="SQL of node 'bad' does not parse"):
        hr.Pipeline("p").sql("bad", "SELEC nothing FROM")


def test_topological_order_keeps_declaration_order_for_ties() -> None:
    pipeline = hr.Pipeline("p")
    pipeline.transform(lambda a, b: a, name="c")
    pipeline.source(lambda: None, name="b")
    pipeline.source(lambda: None, name="a")
    assert [n.name for n in pipeline.validate().nodes] == ["b", "a", "c"]


def test_code_hash_follows_the_source_code() -> None:
    first, second = hr.Pipeline("p"), hr.Pipeline("p")

    first.transform(lambda x: x, name="node")
    second.transform(lambda x: x + 1, name="node")
    assert first.nodes["node"].code_hash() != second.nodes["node"].code_hash()
    third = hr.Pipeline("p")
    third.transform(lambda x: x + 1, name="node", version="v1")
    assert third.nodes["node"].code_hash() != second.nodes["node"].code_hash()
