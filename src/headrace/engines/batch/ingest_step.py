"""The step of an ingest node: read its source, validate, commit rows, quarantine, position.

Incremental sources append what is new. Each read is step ``n`` of the writer
``headrace:<node>`` (a Delta Lake application transaction): the quarantine is committed first,
then the rows with the new position, both tagged with step ``n``. A crash between the two
commits is found at the next run (the quarantine is one step ahead) and the same range is read
again, without appending its quarantine a second time. The position lives in the same Delta
commit as the rows it covers, so rows and position cannot disagree; the metadata database
keeps a copy for listings.

Records that did not parse count as failing rows: the score is the contract's score times the
share of records that parsed. The gate is judged before the rows are committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from headrace.connectors.base import POSITION_COLUMNS, Batch
from headrace.core.fingerprint import content_hash, key_hash
from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus, QualityRecord
from headrace.core.schema_change import contract_schema
from headrace.core.source import SourceSpec
from headrace.engines.batch.ingest import Ingested, open_reading, read_new
from headrace.engines.batch.plan import Task
from headrace.engines.batch.ports import Written
from headrace.engines.batch.task import (
    QUARANTINE_SUFFIX,
    Output,
    TaskRunner,
    _AttemptsFailed,
    _describe,
    _now,
    _report_of,
)
from headrace.errors import QualityGateError

__all__ = ["IngestStep"]


class IngestStep:
    """Runs ingest tasks for a :class:`~headrace.engines.batch.task.TaskRunner`."""

    def __init__(self, runner: TaskRunner) -> None:
        self.runner = runner

    def run(
        self, task: Task, started: datetime, cache_key: str, code_hash: str, reason: str
    ) -> NodeRunRecord:
        """Read an ingest node's source, validate, and commit rows, quarantine and position.

        Incremental sources append what is new. Each read is step ``n`` of the writer
        ``headrace:<node>`` (a Delta application transaction): the quarantine is committed
        first, then the rows with the new position, both tagged with step ``n``. A crash
        between the two commits is found at the next run (the quarantine is one step ahead)
        and the same range is read again, without appending its quarantine a second time.
        """
        node = task.node
        assert node.source is not None
        name, quarantine = node.name, f"{node.name}{QUARANTINE_SUFFIX}"
        app = f"headrace:{name}"
        incremental = node.source.incremental
        since: dict[str, Any] | None = None
        until: dict[str, Any] | None = None
        step, quarantine_done = 1, False
        if incremental:
            step = (self.runner.store.transaction_version(name, app) or 0) + 1
            if step > 1 and not self.runner.full_refresh:
                since = _position(self.runner.store.latest_commit_metadata(name))
            if self.runner.store.transaction_version(quarantine, app) == step:
                until = _position(self.runner.store.latest_commit_metadata(quarantine))
                quarantine_done = True
        spec = node.source.resolved(self.runner.graph.config, node=name)
        try:
            attempted = self.runner._attempt(
                task,
                {},
                {},
                call=lambda: (self._load(task, spec, since, until), None),
            )
        except _AttemptsFailed as failed:
            return self.runner._record(
                task,
                NodeStatus.FAILED,
                started,
                attempts=failed.attempts,
                error=_describe(failed.error),
                cache_reason=reason,
                cache_key=cache_key,
            )
        got: _Loaded = attempted.value
        bad, quality = got.bad, got.quality
        append = incremental and not self.runner.full_refresh
        extra = {"headrace.position": json.dumps(got.position)} if got.position is not None else {}
        txn = (app, step) if incremental else None
        keys = (cache_key, code_hash)
        nothing_new = since is not None and got.records == 0 and got.position == since
        if bad.height and not quarantine_done:
            quality["quarantine"] = self._commit(
                task, bad, keys, quarantine, append=append, transaction=txn, extra=extra
            )
        elif not append and not nothing_new and self.runner.store.exists(quarantine):
            quality["quarantine"] = self._commit(
                task, bad, keys, quarantine, append=False, transaction=txn, extra=extra
            )
        # The gate is judged before the rows are committed: a failing read commits only its
        # quarantine (to look at), and the next run reads the same range again.
        error = self._record_ingest_quality(task, got)
        if error is not None:
            self._discard(got.valid)
            output = Output(key=cache_key)
        elif nothing_new and self.runner.store.exists(name):
            self._discard(got.valid)
            output = self._current_output(task, name, keys)
            if self.runner.store.exists(quarantine):
                self._current_output(task, quarantine, keys)  # record it too, if a crash didn't
            reason += ", nothing new"
        else:
            output = self._commit(
                task, got.valid, keys, name, append=append, transaction=txn, extra=extra
            )
            reason += f", {got.records:,} record(s) from {got.parts} part(s)"
        if bad.height:
            reason += f", {bad.height:,} quarantined"
        self.runner.outputs[task.id] = output
        return self.runner._record(
            task,
            NodeStatus.FAILED if error else NodeStatus.SUCCEEDED,
            started,
            attempts=attempted.attempts,
            cache_reason=reason,
            cache_key=cache_key,
            rows_in=got.records,
            rows_out=got.valid_rows,
            dataset=output.dataset,
            version=output.version,
            error=error,
        )

    def _load(
        self,
        task: Task,
        spec: SourceSpec,
        since: dict[str, Any] | None,
        until: dict[str, Any] | None,
    ) -> _Loaded:
        """Read the source: validated in memory (with a contract) or staged batch by batch.

        Without a contract, rows are written as uncommitted files one batch at a time, so
        memory holds one batch, not the dataset.
        """
        node = task.node
        if node.contract is not None:
            got = read_new(
                node.name,
                spec,
                self.runner.base_dir,
                contract=node.contract,
                since=since,
                until=until,
            )
            valid, bad, quality = self._split_ingested(task, got)
            return _Loaded(
                records=got.records,
                parsed=got.data.height,
                valid=valid,
                valid_rows=valid.height,
                bad=bad,
                position=got.position,
                parts=got.parts,
                quality=quality,
            )
        reading = open_reading(
            node.name, spec, self.runner.base_dir, contract=None, since=since, until=until
        )
        tally = _Tally()
        staged = self.runner.store.stage(node.name, tally.frames(reading.batches))
        rejects = (
            pl.concat(tally.rejects, how="diagonal_relaxed") if tally.rejects else pl.DataFrame()
        )
        return _Loaded(
            records=tally.records,
            parsed=tally.parsed,
            valid=_StagedRows(staged, key_hash(*tally.hashes)),
            valid_rows=tally.parsed,
            bad=_as_quarantine(rejects) if rejects.height else pl.DataFrame(),
            position=reading.position,
            parts=reading.parts,
            quality={},
        )

    def _discard(self, valid: pl.DataFrame | _StagedRows) -> None:
        if isinstance(valid, _StagedRows):
            self.runner.store.discard(valid.files)

    def _split_ingested(
        self, task: Task, got: Ingested
    ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
        """Valid rows (position columns dropped) and the quarantine: rejects + failed rows."""
        node = task.node
        data = got.data
        quality: dict[str, Any] = {}
        parts = [_as_quarantine(got.rejects)] if got.rejects.height else []
        if node.contract is not None:
            if data.width == 0:
                data = pl.DataFrame(
                    schema={f.name: f.polars_dtype or pl.String() for f in node.contract.fields}
                )
            approved = self.runner._check_contract_change(node)
            assert self.runner.validator is not None
            outcome = self.runner.validator(
                data, node.contract, lookups=self.runner._lookups(node), report=_report_of(task)
            )
            quality.update(outcome=outcome, approved=approved)
            data = outcome.valid
            if outcome.quarantined.height:
                parts.insert(0, outcome.quarantined)
        valid = data.drop(POSITION_COLUMNS, strict=False)
        bad = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
        return valid, bad, quality

    def _commit(
        self,
        task: Task,
        frame: pl.DataFrame | _StagedRows,
        keys: tuple[str, str],
        name: str,
        *,
        append: bool,
        transaction: tuple[str, int] | None,
        extra: Mapping[str, str],
    ) -> Output:
        """Commit ``frame`` to ``name`` (appended or replacing), recorded with its position.

        ``keys`` is (cache key, code hash) of the task.
        """
        cache_key, code_hash = keys
        if isinstance(frame, pl.DataFrame) and not append and transaction is None:
            return self.runner._persist(task, frame, cache_key, code_hash, dataset=name)[0]
        previous = self.runner.log.latest_write(name, None)
        digest = frame.digest if isinstance(frame, _StagedRows) else content_hash(frame)
        if append and previous is not None:
            digest = key_hash(previous.content_hash, digest)
        metadata = {**self.runner._commit_metadata(task, cache_key, code_hash), **extra}
        written: Written
        if isinstance(frame, _StagedRows):
            written = self.runner.store.commit_staged(
                frame.files, commit_metadata=metadata, append=append, transaction=transaction
            )
        else:
            written = self.runner.store.write(
                name, frame, commit_metadata=metadata, append=append, transaction=transaction
            )
        position = extra.get("headrace.position")
        self.runner._record_version(
            task, name, written, digest, keys, position=json.loads(position) if position else None
        )
        return Output(key=digest, rows=written.total_rows, dataset=name, version=written.version)

    def _current_output(self, task: Task, name: str, keys: tuple[str, str]) -> Output:
        """The dataset as it stands (an incremental read found nothing new).

        A crash between the Delta commit of the rows and its metadata record leaves a newest
        version that nothing recorded: it is recorded now (its rows, size, schema and read
        position come from the table), so readers of the recorded history see it.
        """
        newest = self.runner.log.latest_write(name, None)
        current = self.runner.store.current_version(name)
        if current is not None and (newest is None or newest.version < current):
            newest = self._recover(task, name, current, newest, keys)
        if newest is None or newest.version != current:
            return Output(key=f"{name}@{current}", dataset=name, version=current)
        return Output(
            key=newest.content_hash, rows=newest.total_rows, dataset=name, version=newest.version
        )

    def _recover(
        self,
        task: Task,
        name: str,
        version: int,
        previous: DatasetVersion | None,
        keys: tuple[str, str],
    ) -> DatasetVersion:
        store = self.runner.store
        metadata = store.commit_metadata(name, version)
        frame = store.scan(name, version)
        schema = {c: str(t) for c, t in frame.collect_schema().items()}
        total = int(frame.select(pl.len()).collect().item())
        position = metadata.get("headrace.position")
        recovered = DatasetVersion(
            dataset=name,
            version=version,
            run_id=metadata.get("headrace.run_id", self.runner.run_id),
            node=task.node.name,
            created_at=_now(),
            partition=None,
            rows_written=total - (previous.total_rows if previous is not None else 0),
            total_rows=total,
            bytes=0,
            content_hash=key_hash(previous.content_hash if previous else "", name, str(version)),
            schema=schema,
            cache_key=metadata.get("headrace.cache_key", keys[0]),
            code_hash=metadata.get("headrace.code_hash", keys[1]),
            position=json.loads(position) if position else None,
        )
        self.runner.log.record_dataset_version(recovered)
        return recovered

    def _record_ingest_quality(self, task: Task, got: _Loaded) -> str | None:
        """Store the quality record of an ingest step; the gate's failure text, if it fails.

        Records that did not parse count as failing rows: the score is the contract's score
        times the share of records that parsed (just that share without a contract).
        """
        node = task.node
        quality = got.quality
        outcome = quality.get("outcome")
        unparsed = got.records - got.parsed
        if outcome is None and not unparsed:
            return None
        share = got.parsed / got.records if got.records else 1.0
        score = (outcome.score if outcome is not None else 1.0) * share
        failed_checks = list(outcome.failed_error_checks) if outcome is not None else []
        threshold = node.gate if node.gate is not None else 0.0
        problems = []
        if score < threshold:
            problems.append(f"quality score {score:.3f} is below the gate {threshold:g}")
        if failed_checks:
            problems.append(f"error checks failed: {', '.join(failed_checks)}")
        if unparsed:
            problems.append(f"{unparsed:,} record(s) did not parse")
        q_output: Output | None = quality.get("quarantine")
        checks = outcome.checks.to_dicts() if outcome is not None else []
        self.runner.log.record_quality(
            QualityRecord(
                run_id=self.runner.run_id,
                pipeline=self.runner.graph.pipeline,
                node=node.name,
                partition=task.partition,
                contract=node.contract.name if node.contract is not None else "(parse)",
                created_at=_now(),
                rows=got.records,
                valid_rows=got.valid_rows,
                quarantined_rows=got.bad.height,
                score=score,
                gate=node.gate,
                passed=not (score < threshold or failed_checks),
                checks=checks,
                quarantine_dataset=q_output.dataset if q_output else None,
                quarantine_version=q_output.version if q_output else None,
                contract_schema=contract_schema(node.contract) if node.contract else {},
                approved_changes=quality.get("approved", []),
            )
        )
        if score < threshold or failed_checks:
            error = QualityGateError(
                f"output of node {node.name!r} fails its quality gate: {'; '.join(problems)} "
                f"(see `headrace quarantine {node.name}`)"
            )
            return _describe(error)
        return None


@dataclass(frozen=True)
class _StagedRows:
    """Rows written as uncommitted files (see DatasetWriter.stage), with their content key."""

    files: Any
    digest: str


@dataclass
class _Loaded:
    """What an ingest step read: counts, valid rows (in memory or staged), the quarantine."""

    records: int
    parsed: int
    valid: pl.DataFrame | _StagedRows
    valid_rows: int
    bad: pl.DataFrame
    position: dict[str, Any] | None
    parts: int
    quality: dict[str, Any]


class _Tally:
    """Counts records, parsed rows and rejects of batches passing through; hashes the rows."""

    def __init__(self) -> None:
        self.records = 0
        self.parsed = 0
        self.rejects: list[pl.DataFrame] = []
        self.hashes: list[str] = []

    def frames(self, batches: Iterator[Batch]) -> Iterator[pl.DataFrame]:
        for batch in batches:
            self.records += batch.records
            self.parsed += batch.data.height
            if batch.rejects.height:
                self.rejects.append(batch.rejects)
            data = batch.data.drop(POSITION_COLUMNS, strict=False)
            if data.height:
                self.hashes.append(content_hash(data))
                yield data


def _as_quarantine(rejects: pl.DataFrame) -> pl.DataFrame:
    """Reader rejects in the quarantine's terms: rule ``parse.<reason>``, reason ``<reason>``."""
    return rejects.with_columns(
        pl.concat_list(pl.lit("parse") + "." + pl.col("_hr_reason")).alias("_hr_rules"),
        pl.concat_list(pl.col("_hr_reason")).alias("_hr_reasons"),
    ).drop("_hr_reason")


def _position(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    text = metadata.get("headrace.position")
    return None if not text else dict(json.loads(text))
