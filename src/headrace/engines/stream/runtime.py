"""The streaming job: poll, validate, transform, advance windows, emit, checkpoint.

One worker process runs one :class:`StreamJob`. It owns a set of source partitions (all of
them, or those the broker's consumer group gives it) and keeps their state. Each loop takes
one micro-batch from the consumer. Online-store writes run on a writer thread while the next
batch is computed, at most two batches behind: a slow sink blocks the loop, so it slows the
source and memory stays bounded by ``max_batch`` (backpressure). A checkpoint first waits for
every queued write.

Exactly-once effects
--------------------
- Online store: upserts ordered by event time, so replaying outputs after a crash rewrites
  the same values and never overwrites a newer one.
- Offline log: each checkpoint appends its rows in one Delta commit that records, per owned
  partition, the checkpoint number (a Delta application transaction). Before appending, the
  job records an *intent* (the positions the checkpoint ends at). After a crash between the
  append and the checkpoint, the restarted job reads exactly up to those positions, rebuilds
  the same rows (outputs depend only on the input positions, never on batch boundaries: a
  row is emitted when final, and late/valid is decided per event), sees from the Delta log
  that the commit is there, and does not append again.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from headrace.connectors.stream.base import OFFSET, PARTITION, Polled, StreamConsumer
from headrace.core.features import FeatureView
from headrace.engines.compute.features import view_input
from headrace.engines.stream.operators import PARTITION as OP_PARTITION
from headrace.engines.stream.operators import make_operator
from headrace.engines.stream.planner import StreamPlan
from headrace.engines.stream.ports import Checkpoints, OfflineLog, OnlineSink, RowValidator
from headrace.engines.stream.state import PartitionState, decode_state, encode_state
from headrace.errors import StreamError

__all__ = ["JobStats", "StreamJob", "StreamOptions"]

log = logging.getLogger("headrace.stream")
FLUSH = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
"""A watermark past every event: flushes every window (end of a bounded input)."""


@dataclass(frozen=True)
class StreamOptions:
    """How a job runs."""

    checkpoint_interval: float = 1.0
    max_batch: int = 100_000
    poll_timeout: float = 0.2
    until_end: bool = False
    """Stop (after flushing every window) once a poll finds nothing new and every owned
    partition is read to where it ended when the broker was last asked (see ``at_end``)."""
    max_seconds: float | None = None
    """Stop after this long (then checkpoint, without flushing)."""
    group: bool = False
    """Share the partitions with other workers of the same job (brokers without their own
    consumer groups: the checkpoint store keeps the members and who owns what)."""
    member: str = ""
    """This worker's name in the group (default: pid + random)."""
    idle_timeout: float | None = None
    """Seconds without events after which a partition stops holding the watermark back."""


@dataclass
class JobStats:
    """Counters of a job run (what the CLI and benchmarks show)."""

    events: int = 0
    valid: int = 0
    quarantined: int = 0
    late: int = 0
    emitted: int = 0
    checkpoints: int = 0
    batches: int = 0
    seconds: float = 0.0
    per_view: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Outputs:
    """Names of the offline datasets a job appends to."""

    events: str
    late: str
    quarantine: str
    views: Mapping[str, str]


class StreamJob:
    """A streaming job over one plan and one consumer (see the module docs)."""

    def __init__(
        self,
        name: str,
        plan: StreamPlan,
        consumer: Callable[[StreamJob], StreamConsumer],
        *,
        validator: RowValidator,
        online: OnlineSink | None,
        offline: OfflineLog,
        checkpoints: Checkpoints,
        outputs: Outputs,
        options: StreamOptions,
        on_batch: Callable[[JobStats], None] | None = None,
    ) -> None:
        self.name = name
        self.plan = plan
        self.validator = validator
        self.online = online
        self.offline = offline
        self.checkpoints = checkpoints
        self.outputs = outputs
        self.options = options
        self.on_batch = on_batch
        self.stats = JobStats(per_view={v.name: 0 for v in plan.views})
        self.operators = {v.name: make_operator(v) for v in plan.views}
        self.max_event: dict[int, datetime] = {}
        self.positions: dict[int, int | None] = {}
        self.seq = 0
        self.caps: dict[int, int] = {}
        self.cap_seq = 0
        self._pending: dict[str, list[pl.DataFrame]] = {}
        self._carry: Polled | None = None
        self.member = options.member or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._expiry = member_expiry(options.checkpoint_interval)
        self._all: list[int] = []
        self._writer = _Writer(online)
        self._arrived: dict[int, float] = {}
        """Per partition: when its last events arrived (monotonic seconds)."""
        self._started = time.monotonic()
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="headrace-checkpoint")
        self._inflight: tuple[Future[None], Mapping[int, int]] | None = None
        self.consumer = consumer(self)
        """Made after the job: a group-managed consumer calls back into it on rebalances."""

    # -- ownership --------------------------------------------------------------------------

    def _check_shared(self) -> None:
        """Refuse to run on some partitions only when a view's entity is not the stream key.

        Events are routed to partitions by the stream's key; a view keyed otherwise has an
        entity's events in several partitions, which several workers would each see a part
        of (one worker owning them all is fine: its watermark covers them all).
        """
        if not self.positions:
            return
        everything = set(self._all or self.consumer.partitions())
        if set(self.positions) >= everything:
            return
        key = self.plan.stream.key
        split = [v for v in self.plan.views if key is None or key not in v.entity.keys]
        if not split:
            return
        names = ", ".join(f"{v.name!r} (entity {list(v.entity.keys)})" for v in split)
        routed = f"by key {key!r}" if key else "without a key"
        msg = (
            f"this worker of job {self.name!r} now owns partitions {self.owned} of "
            f"{sorted(everything)}: another worker joined. Feature view(s) {names} aggregate "
            f"per entity, but stream {self.plan.stream.topic!r} is routed {routed}, so an "
            "entity's events are spread over the workers; run one worker, or route the stream "
            "by the views' entity key (pipeline.stream(..., key=...)) and keep views keyed "
            "otherwise in a job of their own"
        )
        raise StreamError(msg)

    @property
    def owned(self) -> list[int]:
        """The partitions this worker owns."""
        return sorted(self.positions)

    @property
    def active(self) -> list[int]:
        """The partitions being processed: all owned, or only those replaying an intent."""
        return sorted(self.caps) if self.caps else self.owned

    def assigned(self, partitions: Sequence[int]) -> Mapping[int, int | None]:
        """Load the checkpointed state of ``partitions``; where to read each from.

        Partitions whose last checkpoint left an intent (the worker crashed between the
        offline append and the checkpoint) are replayed first, alone, up to the intent.
        """
        if self.positions and self._pending_rows():
            self.checkpoint()  # what the others hold goes out before any replay
        saved = self.checkpoints.load(self.name, partitions)
        kept = self.checkpoints.state_rows(self.name, partitions) if saved else {}
        for partition in partitions:
            position: int | None = None
            if partition in saved:
                seq, position, blob = saved[partition]
                self.seq = max(self.seq, seq)
                state = decode_state(blob) if blob else None
                if state is not None and state.max_event is not None:
                    self.max_event[partition] = state.max_event
                for name, operator in self.operators.items():
                    if state is not None:
                        pieces = kept.get(partition, {}).get(name, [])
                        rows = _read_rows(pieces)
                        operator.restore(partition, rows, state.emitted.get(name))
            self.positions[partition] = position
        for partition, (seq, position) in self.checkpoints.intents(self.name, partitions).items():
            self.caps[partition] = position
            self.cap_seq = max(self.cap_seq, seq)
        if self.caps:
            log.info("replaying up to the intent of checkpoint %d: %s", self.cap_seq, self.caps)
        self._check_shared()
        return {p: self.positions[p] for p in partitions}

    def revoked(self, partitions: Sequence[int]) -> None:
        """Checkpoint, then forget, ``partitions`` (another worker takes them)."""
        gone = [p for p in partitions if p in self.positions]
        if not gone:
            return
        if not self.caps:
            self.checkpoint()
        for operator in self.operators.values():
            operator.release(gone)
        for partition in gone:
            self.positions.pop(partition, None)
            self.max_event.pop(partition, None)
            self.caps.pop(partition, None)

    def lost(self, partitions: Sequence[int]) -> None:
        """Forget ``partitions`` without a checkpoint: the broker's group moved on without us.

        Another worker may own them already and have checkpointed newer state, which a
        checkpoint now would overwrite; their held offline rows would be appended twice. So
        nothing more is written for them: state, held rows and positions are dropped, and the
        new owner resumes from their last checkpoint. (Online rows this worker wrote since are
        harmless: upserts are idempotent and ordered by event time.)

        Held feature rows do not record their partition, so the rows held for the partitions
        this worker keeps cannot be kept apart: it forgets every partition, back to its last
        checkpoint (the views start from fresh operators: what an operator learnt of an
        entity past the checkpoint must not outlive it), and the consumer hands back the ones
        it keeps through :meth:`assigned` (a Kafka member loses its whole assignment anyway,
        then rejoins the group).
        """
        if not any(p in self.positions for p in partitions):
            return
        self.settle()  # a checkpoint under way was taken before the loss was known
        forgotten = self.owned
        dropped = self._pending_rows()
        self.operators = {v.name: make_operator(v) for v in self.plan.views}
        self._pending = {}
        self._carry = None
        self.positions.clear()
        self.max_event.clear()
        self._arrived.clear()
        self.caps = {}
        log.warning(
            "lost partitions %s: forgot %s and %d held row(s) without a checkpoint; "
            "the partitions resume from their last checkpoint",
            sorted(partitions),
            forgotten,
            dropped,
        )

    def _rebalance(self) -> None:
        """Share the partitions with the live members of the group (checkpoint-store groups)."""
        live = self.checkpoints.heartbeat(self.name, self.member, expiry=self._expiry)
        if self.member not in live:
            live = sorted([*live, self.member])
        index, size = live.index(self.member), len(live)
        mine = [p for i, p in enumerate(self._all) if i % size == index]
        lost = [p for p in self.owned if p not in mine]
        if lost:
            self.revoked(lost)
            self.checkpoints.release(self.name, self.member, lost)
            log.info("handed partitions %s over (members: %s)", lost, live)
        wanted = [p for p in mine if p not in self.positions]
        got = self.checkpoints.claim(self.name, self.member, wanted, live) if wanted else []
        if got:
            self.assigned(got)
            log.info("took partitions %s (members: %s)", got, live)
        if lost or got:
            self.consumer.assign({p: self.positions[p] for p in self.active})
        self._check_shared()  # after the hand-over: the others need not wait for an expiry

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> JobStats:
        """Process until stopped (``until_end``/``max_seconds``) and checkpoint at the end."""
        options = self.options
        self._join()
        started = time.monotonic()
        self._started = started
        last_checkpoint = started
        try:
            while True:
                self.settle(block=False)
                polled = self._next()
                if polled.messages:
                    self._process(polled)
                elif polled.next_positions:
                    self.positions.update(polled.next_positions)  # a replay's cut-off tail
                elif (
                    options.until_end
                    and not self.caps
                    and self.positions
                    and self.consumer.at_end()  # an empty poll may just have come too soon
                ):
                    self._flush()
                    break
                elif options.idle_timeout is not None and not self.caps:
                    self._advance({})  # no events: partitions may have become idle
                now = time.monotonic()
                if self.caps and self._caps_reached():
                    self.checkpoint(seq=self.cap_seq)
                    self.caps = {}
                    if not self.consumer.group_managed:
                        self.consumer.assign({p: self.positions[p] for p in self.owned})
                    last_checkpoint = now
                elif now - last_checkpoint >= options.checkpoint_interval:
                    if not self.caps:
                        self.checkpoint(wait=False)
                    if options.group and not self.consumer.group_managed:
                        self._rebalance()
                    last_checkpoint = now
                if options.max_seconds is not None and now - started >= options.max_seconds:
                    break
            if not self.caps:
                self.checkpoint()
            self.settle()
            if options.group and not self.consumer.group_managed:
                self.checkpoints.release(self.name, self.member, self.owned)
                self.checkpoints.leave(self.name, self.member)
        finally:
            self._writer.close()
            self._committer.shutdown(wait=True)
            self.stats.seconds = time.monotonic() - started
        return self.stats

    def _join(self) -> None:
        """Get partitions: from the broker's group, the checkpoint-store group, or all."""
        if self.consumer.group_managed:
            return  # the broker's group assigns partitions, through assigned()/revoked()
        if self.options.group:
            self._all = sorted(self.consumer.partitions())
            self._rebalance()
            return
        self.consumer.assign(self.assigned(self.consumer.partitions()))
        if self.caps:
            self.consumer.assign({p: self.positions[p] for p in self.active})

    def _next(self) -> Polled:
        if self._carry is not None and not self.caps:
            carry, self._carry = self._carry, None
            return carry
        polled = self.consumer.poll(self.options.max_batch, self.options.poll_timeout)
        if not self.caps or not polled.messages:
            return polled
        return self._split_at_caps(polled)

    def _split_at_caps(self, polled: Polled) -> Polled:
        """Keep what is below the intent's positions.

        The rest is read again after the replay's checkpoint (the consumer is sent back to the
        intent's positions); a group-managed consumer cannot seek, so it is held instead.
        """

        def below(column: pl.Expr) -> pl.Expr:
            cap = pl.col(PARTITION).replace_strict(self.caps, default=None, return_dtype=pl.Int64)
            return cap.is_null() | (column < cap)

        data_in = polled.data.filter(below(pl.col(OFFSET)))
        bad_in = polled.malformed.filter(below(pl.col(OFFSET)))
        later = polled.data.height - data_in.height + polled.malformed.height - bad_in.height
        if later and self.consumer.group_managed:
            self._carry = Polled(
                polled.data.filter(~below(pl.col(OFFSET))),
                dict(polled.next_positions),
                polled.malformed.filter(~below(pl.col(OFFSET))),
            )
        positions = {
            p: min(position, self.caps[p]) if p in self.caps else position
            for p, position in polled.next_positions.items()
        }
        return Polled(data_in, positions, bad_in)

    def _caps_reached(self) -> bool:
        return all((self.positions.get(p) or 0) >= cap for p, cap in self.caps.items())

    def _process(self, polled: Polled) -> None:
        plan = self.plan
        stats = self.stats
        stats.events += polled.messages
        stats.batches += 1
        self.positions.update(polled.next_positions)
        if polled.malformed.height:
            self._hold(self.outputs.quarantine, polled.malformed)
            stats.quarantined += polled.malformed.height
        data = polled.data
        event_time = plan.stream.event_time
        if data.height:
            data, missing = _split_missing_time(data, event_time)
            if missing.height:
                self._hold(self.outputs.quarantine, missing)
                stats.quarantined += missing.height
        contract = plan.contracts.get(plan.stream.node)
        if contract is not None and data.height:
            data, bad = self.validator(data, contract)
            if bad.height:
                self._hold(self.outputs.quarantine, _quarantine_rows(bad, plan.stream.node))
                stats.quarantined += bad.height
        if data.height:
            data, late = self._split_late(data)
            if late.height:
                self._hold(self.outputs.late, late)
                stats.late += late.height
        stats.valid += data.height
        if data.height:
            self._hold(self.outputs.events, data)
        self._advance(self._transform(data) if data.height else {})
        if self.on_batch is not None:
            self.on_batch(stats)

    def _advance(self, frames: Mapping[str, pl.DataFrame]) -> None:
        """Give each view its new rows and emit what the watermark made final."""
        watermark = self._watermark()
        for view in self.plan.views:
            operator = self.operators[view.name]
            rows = frames.get(view.source)
            fresh = _view_rows(view, rows) if rows is not None and rows.height else None
            if fresh is None and not operator.holds:
                continue
            out = operator.advance(fresh, watermark, self.active)
            self._emit(view.name, out)

    def _transform(self, data: pl.DataFrame) -> dict[str, pl.DataFrame]:
        """Every step's output for this batch (with the partition column), by node name."""
        plan = self.plan
        frames: dict[str, pl.DataFrame] = {plan.stream.node: data}
        if not plan.steps:
            return frames
        parts = data.partition_by(PARTITION, as_dict=True, maintain_order=True)
        outs: dict[str, list[pl.DataFrame]] = {s.node.name: [] for s in plan.steps}
        for (partition, *_), part in parts.items():
            current = {plan.stream.node: part}
            for step in plan.steps:
                out = step.call(current[step.input].lazy()).collect()
                if PARTITION not in out.columns:
                    out = out.with_columns(pl.lit(partition, dtype=pl.Int32).alias(PARTITION))
                contract = plan.contracts.get(step.node.name)
                if contract is not None and out.height:
                    out, bad = self.validator(out, contract)
                    if bad.height:
                        rows = _quarantine_rows(bad, step.node.name)
                        self._hold(self.outputs.quarantine, rows)
                        self.stats.quarantined += bad.height
                current[step.node.name] = out
                outs[step.node.name].append(out)
        for name, pieces in outs.items():
            frames[name] = pl.concat(pieces, how="diagonal_relaxed") if pieces else pl.DataFrame()
        return frames

    def _split_late(self, data: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(on time, late): late = older than its partition's watermark at its arrival."""
        column = self.plan.stream.event_time
        disorder = self.plan.stream.disorder
        ts = _utc(pl.col(column), data.schema[column])
        seen = pl.col(PARTITION).replace_strict(
            self.max_event, default=None, return_dtype=pl.Datetime("us", "UTC")
        )
        before = pl.max_horizontal(seen, ts.cum_max().shift(1).over(PARTITION))
        marked = data.with_columns(_hr_before=before, _hr_ts=ts)
        newest = marked.group_by(PARTITION).agg(pl.col("_hr_ts").max()).rows()
        now = time.monotonic()
        for partition, _ in newest:
            self._arrived[int(partition)] = now
        for partition, stamp in newest:
            if stamp is not None:
                prior = self.max_event.get(int(partition))
                self.max_event[int(partition)] = stamp if prior is None else max(prior, stamp)
        is_late = pl.col("_hr_ts") < pl.col("_hr_before") - pl.lit(disorder)
        late = marked.filter(is_late.fill_null(value=False))
        on_time = marked.filter(~is_late.fill_null(value=False)).drop("_hr_before", "_hr_ts")
        if late.height:
            late = late.with_columns(
                _hr_reason=pl.lit("late"),
                _hr_detail=pl.format(
                    "event time {} is older than the watermark {} of partition {}",
                    pl.col("_hr_ts"),
                    pl.col("_hr_before") - pl.lit(disorder),
                    pl.col(PARTITION),
                ),
            ).drop("_hr_before", "_hr_ts")
        else:
            late = late.drop("_hr_before", "_hr_ts")
        return on_time, late

    def _watermark(self) -> datetime | None:
        """The lowest partition watermark; None until every partition has had an event.

        A partition that has not delivered yet may still bring events older than the others'
        watermarks (brokers deliver partitions unevenly), so nothing is final before it has.
        An idle partition therefore holds outputs back until the end of input (a flush), or,
        with ``idle_timeout``, until it has had no event for that long: it then no longer
        counts, and its newest event time is raised to the watermark's, so that an event it
        brings later older than the watermark is late (its outputs may have gone out).
        """
        active = self.active
        if not active:
            return None
        disorder = self.plan.stream.disorder
        idle = self._idle(active)
        counted = [p for p in active if p not in idle]
        if not counted:  # all idle: those that delivered count
            counted = [p for p in active if p in self.max_event]
            idle = [p for p in active if p not in self.max_event]
        if not counted or any(p not in self.max_event for p in counted):
            return None
        watermark = min(self.max_event[p] for p in counted) - disorder
        for partition in idle:
            seen = self.max_event.get(partition)
            if seen is None or seen < watermark + disorder:
                self.max_event[partition] = watermark + disorder
        return watermark

    def _idle(self, active: Sequence[int]) -> list[int]:
        timeout = self.options.idle_timeout
        if timeout is None:
            return []
        now = time.monotonic()
        return [p for p in active if now - self._arrived.get(p, self._started) >= timeout]

    def _emit(self, view: str, out: pl.DataFrame) -> None:
        if not out.height:
            return
        self.stats.emitted += out.height
        self.stats.per_view[view] += out.height
        if self.online is not None:
            self._writer.put(self.operators[view].view, out)
        self._hold(self.outputs.views[view], out)

    def _flush(self) -> None:
        """Emit every open output; the watermark moves past them.

        A later event older than what a flush emitted is late (its output went out already):
        each partition's newest event time is raised to the flushed bound + the disorder.
        """
        for name, operator in self.operators.items():
            if operator.holds:
                self._emit(name, operator.flush(self.active, FLUSH))
        disorder = self.plan.stream.disorder
        for partition in self.active:
            bounds = [
                o.emitted[partition] for o in self.operators.values() if partition in o.emitted
            ]
            bounds = [b for b in bounds if b < FLUSH]
            if bounds and partition in self.max_event:
                self.max_event[partition] = max(self.max_event[partition], max(bounds) + disorder)

    def _hold(self, dataset: str, frame: pl.DataFrame) -> None:
        self._pending.setdefault(dataset, []).append(frame)

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self, *, seq: int | None = None, wait: bool = True) -> None:
        """Append held outputs exactly once, then save positions and state atomically.

        ``seq`` is given when finishing a replay: the number of the interrupted checkpoint,
        whose offline append may already be in the Delta log. What the checkpoint covers is
        taken now; with ``wait`` False its writes (intent, appends, save) run on a thread
        while the next batches are processed, and the next checkpoint waits for them.
        """
        self.settle()
        written = self._writer.barrier()
        parts = self.active
        if not parts:
            return
        number = seq if seq is not None else self.seq + 1
        ends = {p: pos for p in parts if (pos := self.positions[p]) is not None}
        held, self._pending = self._pending, {}
        saved = {p: (self.positions[p], self._state(p)) for p in parts}
        changes: list[tuple[int, str, str, pl.DataFrame]] = []
        expired: dict[tuple[int, str], int] = {}
        for name, operator in self.operators.items():
            for partition in parts:
                rows, whole = operator.take_changes(partition)
                if rows.height:
                    changes.append((partition, name, operator.view.event_time, rows))
                bound = operator.keep_from(partition)
                if whole:
                    expired[(partition, name)] = _REPLACED
                elif bound is not None:
                    expired[(partition, name)] = _micros(bound)
        self.seq = max(self.seq, number)

        def commit() -> None:  # encoding too happens here, off the loop's thread
            frames = {d: pl.concat(f, how="diagonal_relaxed") for d, f in held.items()}
            added = [
                (partition, name, _micros(rows.select(pl.col(column).max()).item()), _ipc(rows))
                for partition, name, column, rows in changes
            ]
            written.wait()  # the online writes of the batches this checkpoint covers
            self._writer.check()
            self.checkpoints.intend(self.name, number, ends)
            writers = {f"{self.name}#{p}": number for p in parts}
            for dataset, frame in frames.items():
                if not frame.height:
                    continue
                if seq is not None:
                    done = [self.offline.committed(dataset, w) for w in writers]
                    if all(d is not None and d >= number for d in done):
                        continue  # appended before the crash; the replay rebuilt the same rows
                self.offline.append(dataset, frame, writers)
            self.checkpoints.save(
                self.name, number, saved, owner=self.member, added=added, expired=expired
            )

        if wait:
            commit()
            self._committed(ends)
        else:
            self._inflight = (self._committer.submit(commit), ends)

    def settle(self, *, block: bool = True) -> None:
        """Finish the checkpoint running on the thread (raise its error), if any."""
        if self._inflight is None:
            return
        future, ends = self._inflight
        if not block and not future.done():
            return
        self._inflight = None
        future.result()
        self._committed(ends)

    def _committed(self, ends: Mapping[int, int]) -> None:
        self.stats.checkpoints += 1
        if ends:
            self.consumer.commit(ends)

    def _pending_rows(self) -> int:
        return sum(f.height for frames in self._pending.values() for f in frames)

    def _state(self, partition: int) -> bytes:
        return encode_state(
            PartitionState(
                max_event=self.max_event.get(partition),
                emitted={n: o.emitted.get(partition) for n, o in self.operators.items()},
                rows={},
            )
        )


class _Writer:
    """Online-store writes on one thread, in order, at most ``depth`` batches queued."""

    def __init__(self, online: OnlineSink | None, depth: int = 2) -> None:
        self.online = online
        self._queue: queue.Queue[tuple[FeatureView, pl.DataFrame] | threading.Event | None] = (
            queue.Queue(depth)
        )
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def put(self, view: FeatureView, rows: pl.DataFrame) -> None:
        """Queue a write (blocks while ``depth`` writes wait); raises an earlier write's error."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="headrace-online", daemon=True)
            self._thread.start()
        self._queue.put((view, rows))

    def barrier(self) -> threading.Event:
        """An event set once every write queued before it is done."""
        done = threading.Event()
        if self._thread is None:
            done.set()
        else:
            self._queue.put(done)
        return done

    def check(self) -> None:
        """Raise the error of a failed write, if any (without clearing it)."""
        if self._error is not None:
            raise self._error

    def drain(self) -> None:
        """Wait until every queued write is done."""
        if self._thread is not None:
            self._queue.join()
        self._raise()

    def close(self) -> None:
        """Finish the queued writes and stop the thread."""
        if self._thread is None:
            return
        try:
            self.drain()
        finally:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        """Write queued batches; those queued together go as one write per view.

        A writer that falls behind so writes each entity's newest row once for several
        micro-batches (the store keeps only the newest anyway) instead of once per batch.
        """
        assert self.online is not None
        while True:
            taken = [self._queue.get()]
            while isinstance(taken[-1], tuple):
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes = [item for item in taken if isinstance(item, tuple)]
            try:
                if writes and self._error is None:
                    self._write(writes)
            except BaseException as exc:
                self._error = exc
            finally:
                last = taken[-1]
                if isinstance(last, threading.Event):
                    last.set()
                for _ in taken:
                    self._queue.task_done()
            if taken[-1] is None:
                return

    def _write(self, writes: list[tuple[FeatureView, pl.DataFrame]]) -> None:
        assert self.online is not None
        by_view: dict[str, tuple[FeatureView, list[pl.DataFrame]]] = {}
        for view, rows in writes:
            by_view.setdefault(view.name, (view, []))[1].append(rows)
        for view, frames in by_view.values():
            rows = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")
            self.online.write(view, rows)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _utc(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        zoned = expr.dt.replace_time_zone("UTC") if dtype.time_zone is None else expr
        return zoned.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    msg = f"event-time column is {dtype}, not a datetime; declare it as one in the stream schema"
    raise StreamError(msg)


def _split_missing_time(data: pl.DataFrame, column: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    if column not in data.columns:
        msg = (
            f"the stream's events have no event-time column {column!r} (they have: "
            f"{', '.join(data.columns)}); fix event_time= in pipeline.stream(...)"
        )
        raise StreamError(msg)
    missing = data.filter(pl.col(column).is_null())
    if not missing.height:
        return data, missing
    reasons = missing.with_columns(
        _hr_reason=pl.lit("missing_event_time"),
        _hr_detail=pl.lit(f"the event has no {column!r}"),
    )
    return data.filter(pl.col(column).is_not_null()), reasons


def _quarantine_rows(bad: pl.DataFrame, node: str) -> pl.DataFrame:
    return bad.with_columns(_hr_node=pl.lit(node))


def _view_rows(view: FeatureView, rows: pl.DataFrame) -> pl.DataFrame:
    """The view's input columns of ``rows`` (times as UTC) and each row's partition."""
    picked = view_input(view, rows.lazy(), what=f"source {view.source!r}").collect()
    return picked.with_columns(rows[PARTITION].cast(pl.Int32).alias(OP_PARTITION))


_REPLACED = 2**62
"""An expiry past every saved row: the checkpoint saves a partition's whole state."""


def member_expiry(checkpoint_interval: float) -> timedelta:
    """How long a group member without a heartbeat (one per checkpoint) counts as alive."""
    return timedelta(seconds=max(10.0, 5 * checkpoint_interval))


def _micros(stamp: datetime) -> int:
    return (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _ipc(rows: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    rows.write_ipc(buffer, compression="lz4")
    return buffer.getvalue()


def _read_rows(pieces: Sequence[bytes]) -> pl.DataFrame | None:
    frames = [pl.read_ipc(io.BytesIO(piece)) for piece in pieces if piece]
    return pl.concat(frames, how="vertical_relaxed") if frames else None
