"""Executors: run a plan's tasks in dependency order.

An executor decides *where and when* tasks run; what a task does is the ``run_task`` callable it
is handed (see :class:`~headrace.engines.batch.task.TaskRunner`). Writing a new executor (a Ray
cluster, a process pool) means implementing :meth:`Executor.execute`:

* call ``run_task(task)`` only after every id in ``task.upstream`` has finished with an ``ok``
  status; it returns the task's :class:`~headrace.core.records.NodeRunRecord` and never raises
  for a failure of the node itself (that comes back as a ``failed`` record);
* for a task whose upstream failed, do not run it: report it with ``skipped(task,
  NodeStatus.UPSTREAM_FAILED)``; with ``fail_fast``, once any task failed start no new task and
  report the rest as ``CANCELLED``;
* return one record per task of the plan, keyed by task id;
* never swallow ``BaseException`` such as ``KeyboardInterrupt``: let it propagate after the
  tasks already running have finished.
"""

from __future__ import annotations

import abc
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from typing_extensions import override

from headrace.core.records import NodeRunRecord, NodeStatus
from headrace.engines.batch.plan import Plan, Task

__all__ = ["Executor", "LocalExecutor", "RunTask", "Skip"]

RunTask = Callable[[Task], NodeRunRecord]
Skip = Callable[[Task, NodeStatus], NodeRunRecord]


class Executor(abc.ABC):
    """Runs the tasks of a :class:`~headrace.engines.batch.plan.Plan`."""

    @abc.abstractmethod
    def execute(
        self, plan: Plan, run_task: RunTask, skipped: Skip, *, fail_fast: bool
    ) -> dict[str, NodeRunRecord]:
        """Run every task of ``plan`` and return a record per task id."""


class LocalExecutor(Executor):
    """Threads in this process; independent tasks run in parallel.

    Threads suit the data plane: Polars, Arrow and DuckDB release the GIL while they work.
    ``max_workers`` defaults to the number of CPUs (at least 2).
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or max(2, os.cpu_count() or 2)

    @override
    def execute(
        self, plan: Plan, run_task: RunTask, skipped: Skip, *, fail_fast: bool
    ) -> dict[str, NodeRunRecord]:
        if self.max_workers == 1:
            return self._execute_inline(plan, run_task, skipped, fail_fast=fail_fast)
        waiting = {task.id: len(task.upstream) for task in plan.tasks}
        children = plan.downstream()
        records: dict[str, NodeRunRecord] = {}
        ready = [task for task in plan.tasks if not task.upstream]
        running: dict[Future[NodeRunRecord], Task] = {}
        stop = threading.Event()

        def settle(task: Task, record: NodeRunRecord) -> None:
            records[task.id] = record
            if not record.status.ok:
                if record.status is NodeStatus.FAILED and fail_fast:
                    stop.set()
                _skip_downstream(plan, task.id, children, records, skipped)
                return
            for child in children[task.id]:
                waiting[child] -= 1
                if waiting[child] == 0 and child not in records:
                    ready.append(plan.task(child))

        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="headrace") as pool:
            while ready or running:
                while ready and not stop.is_set():
                    task = ready.pop(0)
                    if task.id not in records:
                        running[pool.submit(run_task, task)] = task
                if stop.is_set():
                    ready.clear()
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    settle(running.pop(future), future.result())
        for task in plan.tasks:
            if task.id not in records:
                records[task.id] = skipped(task, NodeStatus.CANCELLED)
        return records

    def _execute_inline(
        self, plan: Plan, run_task: RunTask, skipped: Skip, *, fail_fast: bool
    ) -> dict[str, NodeRunRecord]:
        children = plan.downstream()
        records: dict[str, NodeRunRecord] = {}
        failed = False
        for task in plan.tasks:
            if task.id in records:
                continue
            if failed and fail_fast:
                records[task.id] = skipped(task, NodeStatus.CANCELLED)
                continue
            record = run_task(task)
            records[task.id] = record
            if not record.status.ok:
                failed = failed or record.status is NodeStatus.FAILED
                _skip_downstream(plan, task.id, children, records, skipped)
        return records


def _skip_downstream(
    plan: Plan,
    failed_id: str,
    children: dict[str, list[str]],
    records: dict[str, NodeRunRecord],
    skipped: Skip,
) -> None:
    todo = list(children[failed_id])
    while todo:
        child = todo.pop()
        if child in records:
            continue
        records[child] = skipped(plan.task(child), NodeStatus.UPSTREAM_FAILED)
        todo.extend(children[child])
