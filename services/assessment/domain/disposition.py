"""Disposition (分类整治, seed 三): a recommendation from class and flags, the county's decision on it,
and the rectification task that follows.

Rules (settings in policy.DispositionRules), every matching one is listed as a reason and the strongest
disposition wins (CLOSE > RELOCATE > UPGRADE > NONE):
1. a close flag (ecological control zone, backward equipment)      -> CLOSE   (seed 三.1)
2. a hazard flag and a close-with-hazard class (D)                  -> CLOSE
3. outside a park: relocate class (C, D)                            -> RELOCATE (seed 三.2)
                   upgrade class (A, B)                             -> UPGRADE  (seed 三.3)
4. inside a park:  upgrade class -> NONE; relocate class -> UPGRADE (it is already where it should be)
5. excluded (T) -> NONE unless rule 1 applies, or rule 2 does because the county lists the exclusion label
   (T) among the close-with-hazard classes.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date, datetime

from .enterprise import Enterprise
from .policy import DispositionRules


class Disposition(str, enum.Enum):
    CLOSE = "close"  # 关闭退出
    RELOCATE = "relocate"  # 转型转移
    UPGRADE = "upgrade"  # 改造升级
    NONE = "none"


_STRENGTH = {Disposition.NONE: 0, Disposition.UPGRADE: 1, Disposition.RELOCATE: 2, Disposition.CLOSE: 3}


@dataclass(frozen=True)
class Reason:
    code: str  # machine-readable
    disposition: Disposition  # what this reason alone calls for
    detail: str


@dataclass(frozen=True)
class Recommendation:
    disposition: Disposition
    reasons: tuple[Reason, ...]


def recommend(enterprise: Enterprise, class_label: str, rules: DispositionRules, *, excluded: bool = False) -> Recommendation:
    reasons: list[Reason] = []
    for flag in rules.close_flags:
        if enterprise.has_flag(flag):
            reasons.append(Reason(f"flag_{flag}", Disposition.CLOSE, f"{flag} calls for closure"))
    hazards = [f for f in rules.hazard_flags if enterprise.has_flag(f)]
    if class_label in rules.close_with_hazard_classes:
        for flag in hazards:
            reasons.append(
                Reason(f"class_with_{flag}", Disposition.CLOSE, f"class {class_label} with {flag}")
            )
    if excluded:
        reasons.append(Reason("not_evaluated", Disposition.NONE, f"class {class_label} is not evaluated"))
    else:
        if class_label in rules.upgrade_classes:
            if enterprise.in_park:
                reasons.append(Reason("good_class_in_park", Disposition.NONE, f"class {class_label} in a park"))
            else:
                reasons.append(
                    Reason("good_class_outside_park", Disposition.UPGRADE, f"class {class_label} outside a park")
                )
        elif class_label in rules.relocate_classes:
            if enterprise.in_park:
                reasons.append(
                    Reason("low_class_in_park", Disposition.UPGRADE, f"class {class_label} already in a park")
                )
            else:
                detail = f"class {class_label} outside a park"
                if hazards:
                    detail += f"; rectify {', '.join(hazards)} first"
                reasons.append(Reason("low_class_outside_park", Disposition.RELOCATE, detail))
        else:
            reasons.append(Reason("class_without_rule", Disposition.NONE, f"no rule for class {class_label}"))
    best = max((r.disposition for r in reasons), key=_STRENGTH.__getitem__, default=Disposition.NONE)
    return Recommendation(best, tuple(reasons))


def _aware(at: datetime) -> None:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("decision times carry a time zone")


@dataclass(frozen=True)
class CountyDecision:
    """The county confirms or overrides a recommendation; who, when and why are kept."""

    credit_code: str
    year: int
    recommended: Disposition
    decided: Disposition
    decided_by: str
    decided_at: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        _aware(self.decided_at)
        if not self.decided_by.strip():  # blanks name nobody
            raise ValueError("a decision names who took it")
        if self.decided != self.recommended and not self.reason.strip():
            raise ValueError("an override says why")

    @property
    def overrides(self) -> bool:
        return self.decided != self.recommended

    @classmethod
    def confirm(cls, credit_code: str, year: int, recommendation: Recommendation, by: str, at: datetime, note: str = "") -> "CountyDecision":
        d = recommendation.disposition
        return cls(credit_code, year, d, d, by, at, note)

    @classmethod
    def override(
        cls, credit_code: str, year: int, recommendation: Recommendation, decided: Disposition, by: str, at: datetime, reason: str
    ) -> "CountyDecision":
        if decided == recommendation.disposition:
            raise ValueError("deciding what was recommended is a confirmation, not an override")
        return cls(credit_code, year, recommendation.disposition, decided, by, at, reason)


class TaskStatus(str, enum.Enum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RectificationTask:
    """整治任务: what must happen to an enterprise by when. Changes return a new task."""

    id: str
    credit_code: str
    disposition: Disposition
    deadline: date
    status: TaskStatus = TaskStatus.OPEN
    closed_on: date | None = None
    note: str = ""  # what the order says; it stays when the task is closed
    closing_note: str = ""  # how it was closed: the completion's note, the cancellation's reason

    def __post_init__(self) -> None:
        if self.disposition == Disposition.NONE:
            raise ValueError("no task for a NONE disposition")
        if (self.status == TaskStatus.OPEN) != (self.closed_on is None):
            raise ValueError("an open task has no closing date; a closed one has")

    @classmethod
    def for_decision(cls, task_id: str, decision: CountyDecision, deadline: date) -> "RectificationTask":
        return cls(task_id, decision.credit_code, decision.decided, deadline)

    def complete(self, on: date, note: str = "") -> "RectificationTask":
        if self.status != TaskStatus.OPEN:
            raise ValueError(f"task {self.id} is {self.status.value}")
        return replace(self, status=TaskStatus.DONE, closed_on=on, closing_note=note)

    def cancel(self, on: date, reason: str) -> "RectificationTask":
        if self.status != TaskStatus.OPEN:
            raise ValueError(f"task {self.id} is {self.status.value}")
        if not reason.strip():
            raise ValueError("a cancellation says why")
        return replace(self, status=TaskStatus.CANCELLED, closed_on=on, closing_note=reason)

    def is_overdue(self, today: date) -> bool:
        """Open on ``today`` and past its deadline; the deadline day itself is still on time. ``today`` may be a day
        gone by: a task closed (late) after it was overdue then, and stays so in every report of that day."""
        return today > self.deadline and (self.closed_on is None or self.closed_on > today)

    @property
    def completed_late(self) -> bool:
        return self.status == TaskStatus.DONE and self.closed_on is not None and self.closed_on > self.deadline
