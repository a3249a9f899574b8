"""Classes (A/B/C/D ...) by rank inside a county and group, or by score thresholds.

Rank mode, the rules written down:
- order: published score descending, then credit code ascending; that order is the display ``rank``
  (1..n, unique). ``score_rank`` is the competition rank (1 + how many scored strictly higher).
- boundaries: band k covers display ranks up to ceil(n x cumulative_share_k). The straddling enterprise
  gets the better class (the benefit of the doubt goes to the enterprise, as with ties):
  n=10, A=20% -> 2 A; n=7, A=20% -> ceil(1.4) = 2 A, B=60% -> ceil(4.2) = 5, C=95% -> ceil(6.65) = 7, no D.
- ties: enterprises with equal published scores all get the class of the best-placed of them (the
  better class); positions below are not pushed down, so a class may hold more than its share.
Threshold mode: the first band whose min_score <= score; the last band takes the rest.
Excluded enterprises (class T) never reach this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Mapping

from .exact import to_fraction
from .policy import ClassRule


@dataclass(frozen=True)
class Placement:
    subject: str  # credit code or cluster id
    score: Decimal
    class_label: str
    rank: int  # display rank, unique
    score_rank: int  # competition rank: equal scores share it
    group_size: int


def band_limits(n: int, rule: ClassRule) -> tuple[int, ...]:
    """Cumulative last display rank of each band in rank mode: ceil(n x share)."""
    if rule.mode != "rank":
        raise ValueError("band limits exist in rank mode only")
    out = []
    for b in rule.bands:
        x = n * to_fraction(b.cumulative_share)  # type: ignore[arg-type]
        out.append(-((-x.numerator) // x.denominator))
    return tuple(out)


def _by_threshold(score: Decimal, rule: ClassRule) -> str:
    for b in rule.bands[:-1]:
        if score >= b.min_score:  # type: ignore[operator]
            return b.label
    return rule.bands[-1].label


def classify(scores: Mapping[str, Decimal] | Iterable[tuple[str, Decimal]], rule: ClassRule) -> list[Placement]:
    """Place every subject of one group; the list is in display-rank order."""
    items = list(scores.items()) if isinstance(scores, Mapping) else list(scores)
    subjects = [s for s, _ in items]
    if len(set(subjects)) != len(subjects):
        raise ValueError("a subject appears twice in one ranking")
    ordered = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    n = len(ordered)
    limits = band_limits(n, rule) if rule.mode == "rank" else ()
    out: list[Placement] = []
    tie_label = tie_score = None
    tie_rank = 0
    for i, (subject, score) in enumerate(ordered, start=1):
        if tie_score is not None and score == tie_score:
            label, srank = tie_label, tie_rank  # equal scores: the better class, the same score rank
        else:
            if rule.mode == "rank":
                label = next(b.label for b, lim in zip(rule.bands, limits) if i <= lim)
            else:
                label = _by_threshold(score, rule)
            srank = i
            tie_label, tie_score, tie_rank = label, score, i
        out.append(Placement(subject, score, label, i, srank, n))  # type: ignore[arg-type]
    return out
