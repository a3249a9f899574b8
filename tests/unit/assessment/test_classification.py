"""Class boundaries: band k ends at display rank ceil(n x cumulative share); ties take the better class.

Default rank rule: A 20 %, B to 60 %, C to 95 %, D the rest.
"""
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.assessment.domain.classification import band_limits, classify
from services.assessment.domain.policy import ClassBand, ClassRule, default_policy

from .factories import COUNTY, YEAR, code

RULE = default_policy(COUNTY, YEAR).class_rule


def distinct(n):
    """n subjects with scores n, n-1, ..., 1 (code(i) has score n - i + 1)."""
    return {code(i): Decimal(n - i + 1) for i in range(1, n + 1)}


def counts(placements):
    out = {}
    for p in placements:
        out[p.class_label] = out.get(p.class_label, 0) + 1
    return out


@pytest.mark.parametrize(
    "n, limits, expected",
    [
        # n=1: ceil(0.2)=1 -> the only enterprise is A
        (1, (1, 1, 1, 1), {"A": 1}),
        # n=7: ceil(1.4)=2, ceil(4.2)=5, ceil(6.65)=7 -> A 2, B 3, C 2, D 0
        (7, (2, 5, 7, 7), {"A": 2, "B": 3, "C": 2}),
        # n=10: 2, 6, ceil(9.5)=10 -> A 2 (exactly 20 %), B 4, C 4, no D (half an enterprise is not one)
        (10, (2, 6, 10, 10), {"A": 2, "B": 4, "C": 4}),
        # n=19: ceil(3.8)=4, ceil(11.4)=12, ceil(18.05)=19
        (19, (4, 12, 19, 19), {"A": 4, "B": 8, "C": 7}),
        # n=20: 4, 12, 19 -> the first D
        (20, (4, 12, 19, 20), {"A": 4, "B": 8, "C": 7, "D": 1}),
        # n=21: ceil(4.2)=5, ceil(12.6)=13, ceil(19.95)=20 -> D 1
        (21, (5, 13, 20, 21), {"A": 5, "B": 8, "C": 7, "D": 1}),
        # n=40: 8, 24, 38 -> D 2 = exactly 5 %
        (40, (8, 24, 38, 40), {"A": 8, "B": 16, "C": 14, "D": 2}),
    ],
)
def test_boundaries(n, limits, expected):
    assert band_limits(n, RULE) == limits
    placed = classify(distinct(n), RULE)
    assert counts(placed) == expected
    assert [p.rank for p in placed] == list(range(1, n + 1))
    assert all(p.group_size == n for p in placed)
    # the worst band never exceeds its share
    assert expected.get("D", 0) <= n * Decimal("0.05")


def test_empty_group():
    assert classify({}, RULE) == []


def _tie(n, positions):
    """Distinct scores, except that the given display positions share one score."""
    scores = distinct(n)
    tied = Decimal(n - positions[0] + 1)
    for p in positions:
        scores[code(p)] = tied
    return scores


@pytest.mark.parametrize(
    "positions, labels, expected_counts",
    [
        # A boundary at rank 4 of 20: ranks 4 and 5 tie -> both A; B still ends at rank 12
        ([4, 5], ("A", "A"), {"A": 5, "B": 7, "C": 7, "D": 1}),
        # B boundary at rank 12: ranks 12 and 13 tie -> both B
        ([12, 13], ("B", "B"), {"A": 4, "B": 9, "C": 6, "D": 1}),
        # C boundary at rank 19: ranks 19 and 20 tie -> both C, no D
        ([19, 20], ("C", "C"), {"A": 4, "B": 8, "C": 8}),
        # a three-way tie straddling the A/B boundary: 3, 4, 5 -> all A
        ([3, 4, 5], ("A", "A", "A"), {"A": 5, "B": 7, "C": 7, "D": 1}),
        # a tie inside a band changes nothing
        ([7, 8], ("B", "B"), {"A": 4, "B": 8, "C": 7, "D": 1}),
    ],
)
def test_ties_at_each_boundary_take_the_better_class(positions, labels, expected_counts):
    placed = {p.subject: p for p in classify(_tie(20, positions), RULE)}
    assert tuple(placed[code(i)].class_label for i in positions) == labels
    assert counts(placed.values()) == expected_counts
    # tied subjects share the competition rank; display ranks follow the credit code
    assert {placed[code(i)].score_rank for i in positions} == {positions[0]}
    assert [placed[code(i)].rank for i in positions] == positions


def test_all_equal_scores_are_all_a():
    scores = {code(i): Decimal("50.0000") for i in range(1, 11)}
    placed = classify(scores, RULE)
    assert counts(placed) == {"A": 10}
    assert [p.subject for p in placed] == sorted(scores)  # display order by credit code
    assert {p.score_rank for p in placed} == {1}


def test_input_order_does_not_matter():
    scores = list(_tie(20, [4, 5]).items())
    assert classify(scores, RULE) == classify(list(reversed(scores)), RULE)


def test_duplicate_subject_is_refused():
    with pytest.raises(ValueError):
        classify([(code(1), Decimal(1)), (code(1), Decimal(2))], RULE)


THRESHOLDS = ClassRule(
    mode="threshold",
    bands=(
        ClassBand(label="A", min_score=Decimal(90)),
        ClassBand(label="B", min_score=Decimal(70)),
        ClassBand(label="C", min_score=Decimal(50)),
        ClassBand(label="D"),
    ),
)


@pytest.mark.parametrize(
    "score, label",
    [("90", "A"), ("89.9999", "B"), ("70.0000", "B"), ("69.9999", "C"), ("50", "C"), ("49.9999", "D"), ("-3", "D"), ("120", "A")],
)
def test_threshold_mode_boundaries(score, label):
    [p] = classify({code(1): Decimal(score)}, THRESHOLDS)
    assert p.class_label == label


def test_threshold_mode_ranks_too():
    placed = classify({code(1): Decimal(95), code(2): Decimal(95), code(3): Decimal(10)}, THRESHOLDS)
    assert [(p.class_label, p.rank, p.score_rank) for p in placed] == [("A", 1, 1), ("A", 2, 1), ("D", 3, 3)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), min_size=0, max_size=45))
def test_a_better_score_never_gets_a_worse_class(raw):
    scores = {code(i + 1): Decimal(s) for i, s in enumerate(raw)}
    placed = classify(scores, RULE)
    order = {label: k for k, label in enumerate(RULE.labels)}
    for a in placed:
        for b in placed:
            if a.score > b.score:
                assert order[a.class_label] <= order[b.class_label]
            if a.score == b.score:
                assert a.class_label == b.class_label and a.score_rank == b.score_rank
    # without ties the worst band holds at most its share
    if len(set(raw)) == len(raw):
        assert counts(placed).get("D", 0) <= len(raw) * Decimal("0.05")
