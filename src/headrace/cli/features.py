"""``headrace features ...``: feature views and sets, training sets, materialisation, lookups."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from headrace.cli import views
from headrace.cli.shared import FormatOption, OutputFormat, ProjectOption, err, open_project, out
from headrace.errors import ConfigError, EntityRowsError

__all__ = ["features_app", "serve_project"]

features_app = typer.Typer(
    help="Feature store: list, materialize, training-set, get, bind, serve.",
    no_args_is_help=True,
)

FeatureSetOption = Annotated[
    str | None, typer.Option("--feature-set", "-s", help="Feature set name.")
]
VersionOption = Annotated[
    int | None, typer.Option("--version", "-v", help="Feature set version (default: newest).")
]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="Use the feature set this model was trained on.")
]
ModelVersionOption = Annotated[str | None, typer.Option("--model-version", help="With --model.")]
AsOfOption = Annotated[
    datetime | None,
    typer.Option("--as-of", help="Point in time (ISO 8601, UTC if no zone; default: now)."),
]


@features_app.command("list")
def list_features(project: ProjectOption = None, output: FormatOption = OutputFormat.table) -> None:
    """List feature views, feature sets (with versions) and model bindings."""
    store = open_project(project).features
    live = store.live_view_versions()
    sets = [
        version
        for name in store.registry.feature_set_names()
        for version in store.registry.feature_set_versions(name)
    ]
    bindings = store.registry.bindings()
    if output is OutputFormat.json:
        views.print_json(
            out,
            {
                "views": [{"name": n, "version": v} for n, v in live],
                "feature_sets": [
                    {
                        "name": s.name,
                        "version": s.version,
                        "features": [str(ref) for ref, _ in s.features],
                        "view_versions": s.view_versions,
                    }
                    for s in sets
                ],
                "models": [b.__dict__ for b in bindings],
            },
        )
        return
    table = Table(title="feature views (live versions)")
    for column in ("view", "version", "entity", "features", "ttl"):
        table.add_column(column)
    for name, version in live:
        view = store.view(name, version)
        table.add_row(
            name,
            str(version),
            f"{view.entity.name} ({', '.join(view.entity.keys)})",
            ", ".join(view.feature_names),
            str(view.ttl_delta),
        )
    out.print(table)
    sets_table = Table(title="feature sets")
    for column in ("feature set", "version", "features"):
        sets_table.add_column(column)
    for chosen in sets:
        sets_table.add_row(
            chosen.name, str(chosen.version), ", ".join(str(r) for r, _ in chosen.features)
        )
    out.print(sets_table)
    if bindings:
        models = Table(title="models")
        for column in ("model", "version", "feature set", "set version"):
            models.add_column(column)
        for b in bindings:
            models.add_row(b.model, b.model_version, b.feature_set, str(b.feature_set_version))
        out.print(models)


@features_app.command("materialize")
def materialize(
    view: Annotated[
        list[str] | None, typer.Argument(help="Views to materialize (default: every live one).")
    ] = None,
    as_of: AsOfOption = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Write the latest feature values per entity into the online store (incremental)."""
    proj = open_project(project)
    store = proj.features
    moment = _utc(as_of)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} entities"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=output is OutputFormat.json,
    ) as progress:
        task = progress.add_task("materializing", total=0)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        results = store.materialize(view or None, as_of=moment, on_progress=report)
    if output is OutputFormat.json:
        views.print_json(out, [r.__dict__ for r in results])
        return
    table = Table(title=f"materialized into {store.online_store.describe()}")
    for column in ("view", "version", "dataset version", "entities written", "how", "seconds"):
        table.add_column(column)
    for r in results:
        how = "up to date" if r.skipped else ("incremental" if r.incremental else "full")
        table.add_row(
            r.view,
            str(r.view_version),
            str(r.dataset_version),
            f"{r.rows:,}",
            how,
            f"{r.seconds:.2f}",
        )
    out.print(table)


@features_app.command("training-set")
def training_set(
    entity_file: Annotated[
        Path, typer.Argument(help="Entity rows: CSV or Parquet with join keys and a timestamp.")
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output file (.parquet/.csv).")],
    feature_set: FeatureSetOption = None,
    version: VersionOption = None,
    model: ModelOption = None,
    model_version: ModelVersionOption = None,
    timestamp: Annotated[
        str, typer.Option("--timestamp", "-t", help="Timestamp column of the entity rows.")
    ] = "event_timestamp",
    created_cutoff: Annotated[
        bool,
        typer.Option("--created-cutoff", help="Also exclude values recorded after each row."),
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Build a point-in-time correct training set for entity rows and write it to a file."""
    if feature_set is None and model is None:
        msg = "give --feature-set NAME (or --model NAME --model-version V)"
        raise ConfigError(msg)
    rows = _read_rows(entity_file)
    store = open_project(project).features
    with err.status(f"joining {rows.height:,} entity rows"):
        built = store.get_training_data(
            rows,
            feature_set or "",
            version=version,
            model=model,
            model_version=model_version,
            timestamp=timestamp,
            created_cutoff=created_cutoff,
        )
    _write_rows(built.frame, out_file)
    out.print(
        f"wrote {built.frame.height:,} rows x {len(built.feature_set.features)} features of "
        f"{built.feature_set.name} v{built.feature_set.version} to {out_file} "
        f"(training set {built.record.training_set_id})"
    )
    if built.unusable_rows:
        err.print(
            f"[yellow]warning:[/] {built.unusable_rows:,} entity row(s) have a null key or "
            "timestamp: their features are null"
        )


@features_app.command("get")
def get(
    keys: Annotated[list[str], typer.Argument(help="Join keys of one entity: KEY=VALUE ...")],
    feature_set: FeatureSetOption = None,
    version: VersionOption = None,
    model: ModelOption = None,
    model_version: ModelVersionOption = None,
    as_of: AsOfOption = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Look up one entity's online feature vector, with a status per value."""
    if feature_set is None and model is None:
        msg = "give --feature-set NAME (or --model NAME --model-version V)"
        raise ConfigError(msg)
    entity: dict[str, Any] = {}
    for item in keys:
        key, sep, value = item.partition("=")
        if not sep:
            msg = f"entity key {item!r} must read KEY=VALUE"
            raise EntityRowsError(msg)
        entity[key] = _scalar(value)
    found = open_project(project).features.get_online_features(
        feature_set or "",
        [entity],
        version=version,
        model=model,
        model_version=model_version,
        as_of=_utc(as_of),
    )
    if output is OutputFormat.json:
        views.print_json(
            out,
            {
                "feature_set": found.feature_set,
                "version": found.version,
                "features": dict(zip(found.features, found.values[0], strict=True)),
                "statuses": dict(zip(found.features, found.statuses[0], strict=True)),
            },
        )
        return
    table = Table(title=f"{found.feature_set} v{found.version} for {entity}")
    for column in ("feature", "value", "status", "event time"):
        table.add_column(column)
    for name, value, status, moment in zip(
        found.features, found.values[0], found.statuses[0], found.event_times[0], strict=True
    ):
        table.add_row(name, repr(value), status, "" if moment is None else moment.isoformat())
    out.print(table)


@features_app.command("bind")
def bind(
    model: Annotated[str, typer.Argument(help="Model name.")],
    model_version: Annotated[str, typer.Argument(help="Model version.")],
    feature_set: Annotated[str, typer.Option("--feature-set", "-s", help="Feature set name.")],
    version: VersionOption = None,
    project: ProjectOption = None,
) -> None:
    """Record that a model version was trained on a feature set version (permanent)."""
    binding = open_project(project).features.bind_model(model, model_version, feature_set, version)
    out.print(
        f"model {binding.model} {binding.model_version} -> feature set "
        f"{binding.feature_set} v{binding.feature_set_version}"
    )


@features_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    project: ProjectOption = None,
) -> None:
    """Serve online features over HTTP (FastAPI; OpenAPI at /docs)."""
    serve_project(project, host, port)


def serve_project(project: Path | None, host: str, port: int) -> None:
    """Run the HTTP API of a project with Uvicorn until interrupted."""
    import uvicorn

    from headrace.serving.app import create_app

    proj = open_project(project)
    app = create_app(proj)
    err.print(f"serving {proj.root} on http://{host}:{port} (OpenAPI: /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _scalar(text: str) -> Any:
    """A key value from the command line: an integer when it reads as one."""
    try:
        return int(text)
    except ValueError:
        return text


def _read_rows(path: Path) -> pl.DataFrame:
    if not path.exists():
        msg = f"entity file {path} does not exist"
        raise EntityRowsError(msg)
    if path.suffix in {".parquet", ".pq"}:
        return pl.read_parquet(path)
    if path.suffix in {".csv", ".tsv"}:
        return pl.read_csv(
            path, try_parse_dates=True, separator="\t" if path.suffix == ".tsv" else ","
        )
    msg = f"entity file {path}: use .csv, .tsv or .parquet"
    raise EntityRowsError(msg)


def _write_rows(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.write_csv(path)
    elif path.suffix in {".parquet", ".pq"}:
        frame.write_parquet(path)
    else:
        msg = f"--out {path}: use .parquet or .csv"
        raise ConfigError(msg)
