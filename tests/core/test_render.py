import headrace as hr
from headrace.core import render


def _graph() -> hr.Graph:
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda: None, name="raw")
    pipeline.transform(lambda raw: raw, name="clean", ephemeral=True)
    pipeline.sink(lambda clean: None, name="out")
    return pipeline.validate()


def test_text_lists_nodes_with_inputs() -> None:
    text = render.to_text(_graph())
    assert "clean [transform, ephemeral] <- raw" in text


def test_mermaid_and_dot_have_every_edge() -> None:
    graph = _graph()
    mermaid = render.to_mermaid(graph)
    assert mermaid.startswith("graph LR")
    assert "raw --> clean" in mermaid
    assert "clean --> out" in mermaid
    dot = render.to_dot(graph)
    assert '"raw" -> "clean";' in dot
    assert 'style="dashed"' in dot
