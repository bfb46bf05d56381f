"""``headrace drift`` and ``headrace alerts``: what changed in the data, what fired."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from headrace.cli.shared import FormatOption, OutputFormat, ProjectOption, err, open_project, out
from headrace.cli.views import print_json

__all__ = ["alerts", "drift"]


def drift(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    reference: Annotated[int, typer.Option("--reference", "-r", help="Reference version.")],
    current: Annotated[
        int | None, typer.Option("--current", "-c", help="Version to check (default: newest).")
    ] = None,
    column: Annotated[
        list[str] | None, typer.Option("--column", help="Only this column (repeatable).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write an HTML report with histograms.")
    ] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Compare a dataset version with a reference version, column by column."""
    proj = open_project(project)
    with err.status(f"comparing {dataset} with version {reference}"):
        check = proj.drift(dataset, reference, current, columns=column or None, report=report)
    result = check.result
    if output is OutputFormat.json:
        print_json(out, {"dataset": dataset, "reference": check.reference,
                         "current": check.current, **result.to_dict()})  # fmt: skip
        return
    table = Table(
        title=f"drift of {dataset} v{check.current} against v{check.reference}: "
        f"{len(result.drifted_columns)} of {result.columns.height} column(s) drifted"
    )
    shown = ("column", "kind", "test", "effect", "effect_size", "threshold", "p_value_adjusted",
             "drifted")  # fmt: skip
    present = [c for c in shown if c in result.columns.columns]
    for name in present:
        table.add_column(name)
    for row in result.columns.select(present).iter_rows(named=True):
        cells = []
        for name in present:
            value = row[name]
            if name == "drifted":
                cells.append("[bold red]yes[/]" if value else "no")
            elif isinstance(value, float):
                cells.append(f"{value:.4g}")
            else:
                cells.append("" if value is None else str(value))
        table.add_row(*cells)
    out.print(table)
    if report is not None:
        out.print(f"report: {report}")


def alerts(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many alerts.")] = 20,
    kind: Annotated[str | None, typer.Option(help="Only this rule kind (e.g. drift).")] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """List the newest alerts with their evidence and how each sink took them."""
    fired = open_project(project).alerts(kind=kind, limit=limit)
    if output is OutputFormat.json:
        print_json(out, [a.to_dict() for a in fired])
        return
    table = Table(title="alerts (newest first)")
    for column in ("fired (UTC)", "rule", "severity", "where", "observed", "message", "sinks"):
        table.add_column(column)
    for alert in fired:
        where = " / ".join(x for x in (alert.pipeline, alert.node) if x)
        sinks = ", ".join(f"{d.sink}: {'ok' if d.ok else 'failed'}" for d in alert.deliveries)
        observed = "" if alert.observed is None else f"{alert.observed:.4g}"
        table.add_row(
            f"{alert.fired_at:%Y-%m-%d %H:%M:%S}", alert.rule, alert.severity, where, observed,
            alert.message, sinks,
        )  # fmt: skip
    out.print(table)
