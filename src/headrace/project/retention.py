"""Retention: which dataset versions ``headrace datasets vacuum`` may remove.

A version is kept when any of these holds:

- it is among the newest ``keep_versions`` versions of its dataset, or younger than
  ``keep_days`` (``[retention]`` in headrace.toml, overridable per dataset);
- it is the newest version;
- a recorded training set read it;
- it is the newest version computed by a feature view version that some feature set version
  pins (what training sets and materialisation read for that feature set version).

With no ``[retention]`` limits configured, nothing is removed. Vacuuming deletes only data
files no kept version references; the commit history stays listed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from headrace.storage.datasets import VacuumResult

if TYPE_CHECKING:
    from headrace.project.project import Project

__all__ = ["VacuumPlan", "plan_vacuum", "vacuum"]


@dataclass(frozen=True)
class VacuumPlan:
    """The versions a vacuum keeps for one dataset, and why."""

    dataset: str
    keep: dict[int, str]
    """Kept version -> the reason (policy, newest, training set, feature set)."""


def referenced_versions(project: Project) -> dict[str, dict[int, str]]:
    """Dataset versions that training sets and feature sets reference."""
    refs: defaultdict[str, dict[int, str]] = defaultdict(dict)
    registry = project.features.registry
    for record in registry.training_sets():
        for read in record.inputs.values():
            refs[str(read["dataset"])][int(read["version"])] = (
                f"training set {record.training_set_id}"
            )
    for name in registry.feature_set_names():
        for chosen in registry.feature_set_versions(name):
            for view, view_version in chosen.view_versions.items():
                fingerprint = project.features.registry_fingerprint(view, view_version)
                computed = [
                    v for v in project.metadata.dataset_history(view) if v.code_hash == fingerprint
                ]
                if computed:
                    refs[view].setdefault(
                        computed[0].version, f"feature set {chosen.name} v{chosen.version}"
                    )
    return dict(refs)


def plan_vacuum(project: Project, datasets: list[str] | None = None) -> list[VacuumPlan]:
    """What a vacuum would keep, per dataset."""
    now = datetime.now(UTC)
    refs = referenced_versions(project)
    names = datasets or sorted(v.dataset for v in project.list_datasets())
    plans = []
    for name in names:
        policy = project.settings.retention.policy(name)
        history = project.dataset_history(name)  # newest first; errors for unknown names
        keep: dict[int, str] = {}
        versions = project.datasets.versions(name)
        if versions:
            keep[versions[-1]] = "newest"
        if policy.keep_versions is None and policy.keep_days is None:
            for v in versions:
                keep.setdefault(v, "no retention limit set")
        if policy.keep_versions is not None:
            for v in sorted(versions, reverse=True)[: policy.keep_versions]:
                keep.setdefault(v, f"among the newest {policy.keep_versions}")
        if policy.keep_days is not None:
            cutoff = now - timedelta(days=policy.keep_days)
            for record in history:
                if record.created_at >= cutoff:
                    keep.setdefault(record.version, f"younger than {policy.keep_days:g} days")
        for version, why in refs.get(name, {}).items():
            keep.setdefault(version, f"referenced by {why}")
        plans.append(VacuumPlan(name, keep))
    return plans


def vacuum(
    project: Project, datasets: list[str] | None = None, *, dry_run: bool = False
) -> list[tuple[VacuumPlan, VacuumResult]]:
    """Apply the retention policy: delete what only unkept versions reference."""
    return [
        (plan, project.datasets.vacuum(plan.dataset, set(plan.keep), dry_run=dry_run))
        for plan in plan_vacuum(project, datasets)
    ]
