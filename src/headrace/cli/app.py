"""The ``headrace`` command line: thin Typer commands over :class:`headrace.Project`."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer

from headrace.cli import views
from headrace.cli.features import features_app, serve_project
from headrace.cli.lineage import lineage, reproduce
from headrace.cli.monitoring import alerts, drift
from headrace.cli.shared import (
    FormatOption,
    OutputFormat,
    ProjectOption,
)
from headrace.cli.shared import (
    err as _err,
)
from headrace.cli.shared import (
    open_project as _project,
)
from headrace.cli.shared import (
    out as _out,
)
from headrace.cli.shared import (
    state as _state,
)
from headrace.cli.stream import stream_app
from headrace.cli.stream_run import run as stream_run
from headrace.core import render
from headrace.core.records import RunStatus
from headrace.core.redaction import redact
from headrace.errors import ConfigError, HeadraceError
from headrace.project.scaffold import scaffold

__all__ = ["app", "main"]

app = typer.Typer(
    name="headrace",
    help="ML data pipelines: versioned datasets, run records, caching and partitions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
runs_app = typer.Typer(help="List runs, or show one run's nodes.", no_args_is_help=False)
datasets_app = typer.Typer(help="List datasets, show one, or its version history.")
app.add_typer(runs_app, name="runs")
app.add_typer(datasets_app, name="datasets")
app.add_typer(features_app, name="features")
stream_app.command("run")(stream_run)
app.add_typer(stream_app, name="stream")
app.command("lineage")(lineage)
app.command("reproduce")(reproduce)
app.command("drift")(drift)
app.command("alerts")(alerts)


class DagFormat(enum.StrEnum):
    """How ``headrace dag`` prints."""

    text = "text"
    mermaid = "mermaid"
    dot = "dot"
    json = "json"


@app.callback()
def _root(
    project: ProjectOption = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """ML data pipelines: versioned datasets, run records, caching and partitions."""
    _state.project_dir = project
    _state.debug = debug


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
) -> None:
    """Create a project: headrace.toml and a pipeline.py that runs as is."""
    written = scaffold(directory, name=name)
    for path in written:
        _out.print(f"created {path}")
    _out.print(f"next: cd {directory} && headrace run")


@app.command()
def run(
    pipeline: Annotated[
        str | None, typer.Argument(help="Pipeline name (default: the only one).")
    ] = None,
    partition: Annotated[
        list[str] | None,
        typer.Option(
            "--partition", help="Run only this partition key, e.g. 2013-01-05 (repeatable)."
        ),
    ] = None,
    partitions: Annotated[
        str | None,
        typer.Option(
            "--partitions", help="Backfill a range FIRST..LAST, e.g. 2013-01-01..2013-01-31."
        ),
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Ignore the cache: run every node.")
    ] = False,
    keep_going: Annotated[
        bool, typer.Option("--keep-going", help="On a failure, still run the independent nodes.")
    ] = False,
    config: Annotated[
        list[str] | None, typer.Option("--config", "-c", help="Override a config value: KEY=VALUE.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Parallel tasks (default: CPUs).")
    ] = None,
    approve_breaking: Annotated[
        list[str] | None,
        typer.Option(
            "--approve-breaking",
            help="Allow a breaking change to this node's contract (repeatable; '*' for all).",
        ),
    ] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Run a pipeline: show progress per node, then a summary table."""
    from headrace.engines.batch.executor import LocalExecutor

    proj = _project(project)
    selection = [*(partition or []), *([partitions] if partitions else [])]
    overrides = _parse_config(config or [])
    executor = LocalExecutor(workers or proj.settings.executor.max_workers)
    prepared = proj.prepare_run(
        pipeline,
        partitions=selection,
        full_refresh=full_refresh,
        fail_fast=False if keep_going else None,
        config=overrides,
        executor=executor,
        trigger="cli",
        approve_breaking=approve_breaking or (),
    )
    plan = prepared.plan()
    if output is OutputFormat.json:
        result = prepared.execute(plan)
        views.print_json(_out, proj.get_run(result.run_id).to_dict())
    else:
        _err.print(
            f"run [bold]{prepared.run_id}[/] of pipeline [bold]{prepared.graph.pipeline}[/]: "
            f"{len(plan.tasks)} task(s)"
            + (f", partitions {_span(plan.partitions)}" if plan.partitions else "")
        )
        with views.RunProgress(_err, len(plan.tasks)) as progress:
            prepared.observer = progress
            result = prepared.execute(plan)
        _out.print(views.node_table(result.records, title=f"run {result.run_id}"))
        _out.print(
            f"{result.status.value} in {result.duration:.2f}s — "
            f"inspect with `headrace runs show {result.run_id}`"
        )
        reports = proj.reports_dir(result.run_id)
        if reports.is_dir():
            _out.print(f"quality reports: {reports}")
    if result.status is not RunStatus.SUCCEEDED:
        result.raise_for_status()


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """List the newest runs."""
    if ctx.invoked_subcommand is not None:
        return
    proj = _project(project)
    records = proj.runs(pipeline=pipeline, limit=limit)
    counts = proj.metadata.node_run_counts([r.run_id for r in records])
    if output is OutputFormat.json:
        views.print_json(
            _out, [{**r.to_dict(), "node_counts": counts.get(r.run_id, {})} for r in records]
        )
        return
    _out.print(views.runs_table(records, counts))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Show one run: its parameters and every node's outcome."""
    record = _project(project).get_run(run_id)
    if output is OutputFormat.json:
        views.print_json(_out, record.to_dict())
        return
    duration = "" if record.duration is None else f" in {record.duration:.2f}s"
    _out.print(f"run {record.run_id} of {record.pipeline}: {record.status.value}{duration}")
    _out.print(f"params: {record.params}")
    if record.config:
        _out.print(f"config: {record.config}")
    if record.error:
        _out.print(f"error: {record.error}")
    _out.print(views.node_table(record.nodes))
    for node in record.nodes:
        if node.error:
            _out.print(f"\n[bold red]{node.node}[/] error:\n{node.error.strip()}", markup=True)


@datasets_app.callback(invoke_without_command=True)
def datasets(
    ctx: typer.Context, project: ProjectOption = None, output: FormatOption = OutputFormat.table
) -> None:
    """List datasets with their newest version."""
    if ctx.invoked_subcommand is not None:
        return
    versions = _project(project).list_datasets()
    if output is OutputFormat.json:
        views.print_json(_out, [v.to_dict() for v in versions])
        return
    _out.print(views.dataset_table(versions))


@datasets_app.command("show")
def datasets_show(
    name: Annotated[str, typer.Argument(help="Dataset name (the node that writes it).")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Version (default: newest).")
    ] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="Preview rows.")] = 10,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Show a dataset version: schema, row count and a preview."""
    proj = _project(project)
    record = proj.dataset_version(name, version)
    preview = proj.scan(name, record.version).head(rows).collect()
    if output is OutputFormat.json:
        views.print_json(_out, {**record.to_dict(), "preview": preview.to_dicts()})
        return
    _out.print(
        f"dataset {name} version {record.version}: {record.total_rows:,} rows, "
        f"written by run {record.run_id} at {record.created_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    if record.position is not None:
        _out.print(f"source read up to: {views.position_text(record.position)}")
    _out.print(views.schema_table(dict(record.schema)))
    views.frame_preview(_out, preview, title=f"first {preview.height} rows")


@datasets_app.command("history")
def datasets_history(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """List every version of a dataset, newest first."""
    history = _project(project).dataset_history(name)
    if output is OutputFormat.json:
        views.print_json(_out, [v.to_dict() for v in history])
        return
    _out.print(views.history_table(name, history))


@datasets_app.command("vacuum")
def datasets_vacuum(
    name: Annotated[
        list[str] | None, typer.Argument(help="Datasets to vacuum (default: all).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be removed.")
    ] = False,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Apply [retention]: remove versions no policy, feature set or training set keeps."""
    results = _project(project).vacuum(name or None, dry_run=dry_run)
    if output is OutputFormat.json:
        views.print_json(
            _out,
            [
                {
                    "dataset": plan.dataset,
                    "kept": {str(v): why for v, why in sorted(plan.keep.items())},
                    "removed_versions": result.versions,
                    "files": len(result.files),
                    "bytes": result.bytes,
                    "dry_run": dry_run,
                }
                for plan, result in results
            ],
        )
        return
    _out.print(views.vacuum_table(results, dry_run=dry_run))


@app.command()
def validate(
    data: Annotated[
        str, typer.Argument(help="A data file (csv, parquet, ndjson, arrow) or a dataset name.")
    ],
    contract: Annotated[Path, typer.Option("--contract", "-c", help="Contract YAML file.")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Dataset version (datasets only).")
    ] = None,
    gate: Annotated[
        float, typer.Option("--gate", min=0, max=1, help="Minimum quality score.")
    ] = 0.9,
    quarantine: Annotated[
        Path | None,
        typer.Option("--quarantine", help="Write the quarantined rows to this Parquet file."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write an HTML quality report with charts.")
    ] = None,
    valid_out: Annotated[
        Path | None,
        typer.Option("--valid-out", help="Write the valid rows to this Parquet file."),
    ] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Validate data against a contract: per-check results, score, gate (exit 1 if it fails).

    Runs in Polars' streaming engine: the data is scanned, never held whole (only the rows
    that fail something are kept), so files larger than memory work.
    """
    from headrace.core.contract_yaml import contract_from_yaml
    from headrace.quality.validation import validate_stream

    if not contract.exists():
        msg = f"no contract file {contract}"
        raise ConfigError(msg)
    spec = contract_from_yaml(contract.read_text(encoding="utf-8"), source=str(contract))
    frame = _read_data(data, version, project)
    lookups = {
        check.params["dataset"]: _project(project).scan(check.params["dataset"])
        for check in spec.all_checks()
        if check.kind == "references"
    }
    result = validate_stream(frame, spec, lookups=lookups, valid_out=valid_out)
    if quarantine is not None:
        result.quarantined.write_parquet(quarantine)
    if report is not None:
        from headrace.quality.report import render_report

        report.write_text(
            render_report(result, frame, title=f"{data}", gate=gate), encoding="utf-8"
        )
        _err.print(f"report written to {report}")
    if output is OutputFormat.json:
        views.print_json(
            _out,
            {
                "contract": spec.name,
                "rows": result.rows,
                "valid_rows": result.valid_rows,
                "quarantined_rows": result.quarantined.height,
                "score": result.score,
                "gate": gate,
                "passed": result.passes_gate(gate),
                "checks": result.checks.to_dicts(),
            },
        )
    else:
        _out.print(views.checks_table(result.checks, title=f"contract {spec.name} on {data}"))
        verdict = "[green]passes[/]" if result.passes_gate(gate) else "[bold red]fails[/]"
        _out.print(
            f"{result.rows:,} rows: {result.valid_rows:,} valid, "
            f"{result.quarantined.height:,} quarantined; score {result.score:.3f} "
            f"{verdict} the gate {gate:g}"
        )
    result.gate(gate, what=f"{data}")


@app.command()
def quarantine(
    node: Annotated[
        str | None, typer.Argument(help="A validated node (default: list them all).")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Quarantine version.")
    ] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="Preview rows.")] = 10,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Show the rows a node's contract held back: counts per rule, and the rows themselves."""
    proj = _project(project)
    suffix = "__quarantine"
    if node is None:
        listing = [
            {
                "node": v.dataset.removesuffix(suffix),
                "dataset": v.dataset,
                "version": v.version,
                "rows": v.total_rows,
                "run_id": v.run_id,
            }
            for v in proj.list_datasets()
            if v.dataset.endswith(suffix)
        ]
        if output is OutputFormat.json:
            views.print_json(_out, listing)
        else:
            _out.print(views.records_table("quarantines", listing))
        return
    frame = proj.read(f"{node.removesuffix(suffix)}{suffix}", version)
    counts = (
        frame.select(pl.col("_hr_rules").explode().alias("rule"))
        .group_by("rule")
        .len("rows")
        .sort("rows", descending=True)
    )
    preview = frame.sort("_hr_row").head(rows)
    if output is OutputFormat.json:
        views.print_json(
            _out,
            {
                "node": node,
                "rows": frame.height,
                "rules": counts.to_dicts(),
                "preview": preview.to_dicts(),
            },
        )
        return
    _out.print(
        views.records_table(f"quarantine of {node}: {frame.height:,} rows", counts.to_dicts())
    )
    rules_first = preview.select("_hr_row", "_hr_rules", "_hr_reasons", pl.exclude("^_hr_.*$"))
    views.frame_preview(
        _out,
        rules_first.with_columns(pl.col("_hr_rules", "_hr_reasons").list.join(", ")),
        title=f"first {preview.height} rows",
    )


@app.command()
def profile(
    data: Annotated[
        str, typer.Argument(help="A data file (csv, parquet, ndjson, arrow) or a dataset name.")
    ],
    contract_out: Annotated[
        Path | None,
        typer.Option("--contract-out", help="Write a suggested contract (YAML) to this file."),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Dataset version (datasets only).")
    ] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Profile data per column (nulls, distinct, range, percentiles); suggest a contract."""
    from headrace.core.contract_yaml import contract_to_yaml
    from headrace.quality.profile import display_rows, suggest_contract
    from headrace.quality.profile import profile as run_profile

    path = Path(data)
    frame = _read_data(data, version, project).collect()
    table = run_profile(frame)
    if output is OutputFormat.json:
        views.print_json(_out, table.to_dicts())
    else:
        title = f"profile of {data}: {frame.height:,} rows"
        _out.print(views.records_table(title, display_rows(table)))
    if contract_out is not None:
        name = path.stem if path.suffix else data
        contract_out.write_text(contract_to_yaml(suggest_contract(frame, name)), encoding="utf-8")
        _err.print(f"suggested contract written to {contract_out}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    project: ProjectOption = None,
) -> None:
    """Run the HTTP service: feature serving and the registry API (OpenAPI at /docs)."""
    serve_project(project, host, port)


@app.command()
def dag(
    pipeline: Annotated[
        str | None, typer.Argument(help="Pipeline name (default: the only one).")
    ] = None,
    project: ProjectOption = None,
    output: Annotated[
        DagFormat, typer.Option("--format", "-f", help="text, mermaid, dot or json.")
    ] = DagFormat.text,
) -> None:
    """Print the pipeline's DAG as text, Mermaid, Graphviz DOT or JSON."""
    graph = _project(project).graph(pipeline)
    if output is DagFormat.json:
        views.print_json(
            _out,
            {
                "pipeline": graph.pipeline,
                "nodes": [
                    {
                        "name": n.name,
                        "kind": n.kind.value,
                        "inputs": list(n.inputs),
                        "ephemeral": n.ephemeral,
                        "sql": n.sql,
                        "partitions": n.partitions.describe() if n.partitions else None,
                        "description": n.description,
                    }
                    for n in graph.nodes
                ],
            },
        )
        return
    text = {
        DagFormat.text: render.to_text,
        DagFormat.mermaid: render.to_mermaid,
        DagFormat.dot: render.to_dot,
    }[output](graph)
    _out.file.write(text + "\n")


def _read_data(data: str, version: int | None, project: Path | None) -> pl.LazyFrame:
    """A lazy scan of a data file (it has a suffix) or of a stored dataset of the project."""
    from headrace.project.files import scan_file

    path = Path(data)
    return scan_file(path) if path.suffix else _project(project).scan(data, version)


def _parse_config(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"--config {item!r} must read KEY=VALUE"
            raise ConfigError(msg)
        values[key.strip()] = value
    return values


def _span(keys: tuple[str, ...]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]} ({len(keys)})"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turn headrace errors into one clear message and exit 1."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=False)
    except HeadraceError as exc:
        if debug:
            _err.print_exception()
        _err.print(f"[bold red]error:[/] {redact(str(exc))}", highlight=False)
        if not debug:
            _err.print("(run with --debug for the traceback)", style="dim")
        return 1
    except typer.Abort:
        _err.print("aborted")
        return 130
    except KeyboardInterrupt:
        _err.print("interrupted")
        return 130
    except Exception as exc:  # usage errors from Typer's (vendored) click, and the like
        exit_code = getattr(exc, "exit_code", None)
        if isinstance(exit_code, int):
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            return exit_code
        if debug:
            _err.print_exception()
        _err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {redact(str(exc))}")
        _err.print("this is a bug in headrace; rerun with --debug and report the traceback")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
