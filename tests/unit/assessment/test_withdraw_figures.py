"""domain.enterprise.withdraw_figures: what the merged record holds after a department takes back figures of its part,
one row per rule (the service and the replay both call it)."""
from __future__ import annotations

import pytest

from services.assessment.domain.enterprise import IndicatorConflict, NotGiven, withdraw_figures
from tests.unit.assessment.factories import code

C = code(1)


def _withdraw(parts: dict, merged: dict, department: str, *names: str):
    figures = {f: v for f, (v, _) in merged.items()}
    sources = {f: d for f, (_, d) in merged.items()}
    got, got_sources, part = withdraw_figures(C, 2023, figures, sources, parts, department, names)
    return {f: (v, got_sources[f]) for f, v in got.items()}, part


@pytest.mark.parametrize("parts, merged, department, names, expected", [
    # the only giver takes it back: gone
    ({"tax": {"land": 5, "tax": 9}}, {"land": (5, "tax"), "tax": (9, "tax")}, "tax", ("land",), {"tax": (9, "tax")}),
    # it had only agreed with the standing figure: nothing changes but its part
    ({"tax": {"land": 5}, "land": {"land": 5}}, {"land": (5, "tax")}, "land", ("land",), {"land": (5, "tax")}),
    # the source goes: the others' figure stands, sourced to the first of them by name
    ({"tax": {"land": 5}, "stats": {"land": 5}, "land": {"land": 5}}, {"land": (5, "tax")}, "tax", ("land",),
     {"land": (5, "land")}),
    # a department's figure under the county's: the county's stays
    ({"tax": {"land": 5}, "county": {"land": 7}}, {"land": (7, "county")}, "tax", ("land",), {"land": (7, "county")}),
    # the county's settlement taken back once the departments agree
    ({"tax": {"land": 7}, "land": {"land": 7}, "county": {"land": 7}}, {"land": (7, "county")}, "county", ("land",),
     {"land": (7, "land")}),
    # emissions are figures like the rest; a name given twice counts once
    ({"eco": {"emissions.COD": 3, "emissions.NOx": 4}}, {"emissions.COD": (3, "eco"), "emissions.NOx": (4, "eco")},
     "eco", ("emissions.COD", "emissions.COD"), {"emissions.NOx": (4, "eco")}),
])
def test_withdrawal_rules(parts, merged, department, names, expected):
    got, part = _withdraw(parts, merged, department, *names)
    assert got == expected
    assert part == {f: v for f, v in parts[department].items() if f not in names}


def test_the_county_settling_departments_that_disagree_cannot_withdraw():
    parts = {"tax": {"land": 5}, "land": {"land": 6}, "county": {"land": 6}}
    with pytest.raises(IndicatorConflict) as exc:
        _withdraw(parts, {"land": (6, "county")}, "county", "land")
    assert (exc.value.reason, exc.value.field) == ("conflicting_departments", "land")


def test_a_figure_the_part_does_not_hold_is_refused_naming_it():
    with pytest.raises(NotGiven) as exc:
        _withdraw({"tax": {"land": 5}}, {"land": (5, "tax")}, "tax", "land", "tax", "rnd")
    assert (exc.value.reason, exc.value.fields) == ("figure_not_given", ["rnd", "tax"])
    with pytest.raises(NotGiven):
        _withdraw({"tax": {"land": 5}}, {"land": (5, "tax")}, "stats", "land")


def test_the_inputs_are_not_changed():
    parts = {"tax": {"land": 5}, "land": {"land": 5}}
    figures, sources = {"land": 5}, {"land": "tax"}
    withdraw_figures(C, 2023, figures, sources, parts, "tax", ["land"])
    assert (parts, figures, sources) == ({"tax": {"land": 5}, "land": {"land": 5}}, {"land": 5}, {"land": "tax"})
