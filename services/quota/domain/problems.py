"""Validation answers that machines can read: every problem found, not just the first."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Problem:
    reason: str  # stable, machine-readable, snake_case
    field: str | None = None
    detail: str = ""


class QuotaDomainError(ValueError):
    """Raised with every problem found, so a department gets one complete answer."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("an error needs at least one problem")
        super().__init__("; ".join(f"{p.reason}({p.field})" if p.field else p.reason for p in self.problems))

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(p.reason for p in self.problems)
