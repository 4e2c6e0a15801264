"""The life of a persisted recommendation: open, updated, resolved, dismissed. The only writer of the
`recommendations` table.

One row per condition (`condition_key`, unique since migration 2), for ever:
- a finding with no row opens one (state `open`);
- a finding for an `open` row updates its evidence, message and severity (written only when they change);
- a finding for a `resolved` row re-opens that row (the condition came back);
- a finding for a `dismissed` row leaves it dismissed, with fresh evidence, unless the condition is much worse
  than when it was dismissed: its severity rose, or its score reached `dismissed_reopen_factor` x the score at
  dismissal; then it re-opens;
- an `open` row in the evaluation's scope with no finding is `resolved`; a dismissed row stays dismissed.
Opening and re-opening are returned to the caller, which pushes them as `telemetry.recommendation`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..store.schema import RecommendationRow
from ..store.store import Store, now_ms
from .config import AnalysisConfig
from .rules import Evaluation, Finding, Severity


class RecommendationState:
    OPEN = "open"
    DISMISSED = "dismissed"
    RESOLVED = "resolved"

    ALL = (OPEN, DISMISSED, RESOLVED)


_MAX_EVIDENCE = 50


def to_dict(row: RecommendationRow) -> dict[str, Any]:
    details = json.loads(row.details) if row.details else {}
    return {
        "id": row.id,
        "kind": row.kind,
        "severity": row.severity,
        "workflow": row.workflow_key,
        "workflow_name": row.workflow_name,
        "evidence_run_ids": json.loads(row.evidence_run_ids or "[]"),
        "message": row.message,
        "action": row.action,
        "created_at_ms": row.created_at_ms,
        "updated_at_ms": row.updated_at_ms,
        "state": row.state,
        "details": details,
    }


def _content(finding: Finding) -> dict[str, Any]:
    return {
        "kind": finding.kind,
        "severity": finding.severity,
        "workflow_key": finding.workflow_key,
        "workflow_name": finding.workflow_name,
        "evidence_run_ids": json.dumps(finding.evidence_run_ids[-_MAX_EVIDENCE:]),
        "message": finding.message,
        "action": finding.action,
    }


def _details(finding: Finding, previous: dict[str, Any]) -> str:
    details = {**finding.details, "score": finding.score}
    for key in ("dismissed_score", "dismissed_severity"):
        if key in previous:
            details[key] = previous[key]
    return json.dumps(details, default=str, sort_keys=True)


def _much_worse(finding: Finding, details: dict[str, Any], cfg: AnalysisConfig) -> bool:
    before = details.get("dismissed_severity")
    if before in Severity.RANK and Severity.RANK[finding.severity] > Severity.RANK[before]:
        return True
    score = details.get("dismissed_score")
    return isinstance(score, (int, float)) and score > 0 and finding.score >= cfg.dismissed_reopen_factor * score


def existing_rows(workflow_key: str | None, condition_keys: Iterable[str]) -> dict[str, RecommendationRow]:
    keys = list(condition_keys)
    clause = RecommendationRow.condition_key.in_(keys) if keys else None
    if workflow_key is not None:
        by_wf = RecommendationRow.workflow_key == workflow_key
        clause = by_wf if clause is None else (clause | by_wf)
    if clause is None:
        return {}
    return {row.condition_key: row for row in RecommendationRow.select().where(clause)}


def apply(store: Store, evaluation: Evaluation, rows: dict[str, RecommendationRow], cfg: AnalysisConfig,
          stamp: int | None = None) -> list[dict[str, Any]]:
    """Write the evaluation over the existing `rows` (by condition key). Returns the recommendations that opened
    or re-opened."""
    stamp = stamp or now_ms()
    opened: list[dict[str, Any]] = []
    held = {f.condition_key for f in evaluation.findings}
    with store.db.atomic():
        for finding in evaluation.findings:
            row = rows.get(finding.condition_key)
            content = _content(finding)
            if row is None:
                row = RecommendationRow.create(condition_key=finding.condition_key, state=RecommendationState.OPEN,
                                               details=_details(finding, {}), created_at_ms=stamp,
                                               updated_at_ms=stamp, **content)
                opened.append(to_dict(row))
                continue
            previous = json.loads(row.details) if row.details else {}
            state = row.state
            if state == RecommendationState.RESOLVED:
                state = RecommendationState.OPEN
            elif state == RecommendationState.DISMISSED and _much_worse(finding, previous, cfg):
                state = RecommendationState.OPEN
            details = _details(finding, previous if state == RecommendationState.DISMISSED else {})
            changed = (state != row.state or details != row.details
                       or any(getattr(row, k) != v for k, v in content.items()))
            if not changed:
                continue
            was_open = row.state == RecommendationState.OPEN
            for key, value in content.items():
                setattr(row, key, value)
            row.state, row.details, row.updated_at_ms = state, details, stamp
            row.save()
            if state == RecommendationState.OPEN and not was_open:
                opened.append(to_dict(row))
        for key, row in rows.items():
            if key not in held and row.state == RecommendationState.OPEN and evaluation.covers(key):
                row.state, row.updated_at_ms = RecommendationState.RESOLVED, stamp
                row.save()
    return opened


def dismiss(recommendation_id: int) -> dict[str, Any] | None:
    row = RecommendationRow.get_or_none(RecommendationRow.id == recommendation_id)
    if row is None:
        return None
    if row.state != RecommendationState.DISMISSED:
        details = json.loads(row.details) if row.details else {}
        details["dismissed_score"] = details.get("score")
        details["dismissed_severity"] = row.severity
        row.state, row.details, row.updated_at_ms = RecommendationState.DISMISSED, json.dumps(details), now_ms()
        row.save()
    return to_dict(row)


def listing(state: str | None, severity: str | None, workflow: str | None, limit: int = 500) -> list[dict[str, Any]]:
    query = RecommendationRow.select()
    if state:
        query = query.where(RecommendationRow.state == state)
    if severity:
        query = query.where(RecommendationRow.severity == severity)
    if workflow:
        query = query.where((RecommendationRow.workflow_key == workflow)
                            | (RecommendationRow.workflow_name == workflow))
    query = query.order_by(RecommendationRow.updated_at_ms.desc(), RecommendationRow.id.desc()).limit(limit)
    return [to_dict(row) for row in query]
