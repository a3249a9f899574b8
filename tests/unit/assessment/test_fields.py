"""Figures at the edges: decimal strings in their contract units <-> integer units, never rounded."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.assessment.fields import BadFigures, format_figures, parse_figures, part_from_figures, scale_of
from shared.amounts import format_amount

from .factories import code


def test_units_of_each_field():
    units = parse_figures({"land": "12.5", "tax": "1830000.01", "energy": "1.234", "electricity": "250000",
                           "employees": "30", "emissions.NH3-N": "0.0001", "value_added": "-5.00"})
    assert units == {"land": 125000, "tax": 183000001, "energy": 1234, "electricity": 250000, "employees": 30,
                     "emissions.NH3-N": 1, "value_added": -500}
    assert format_figures(units)["land"] == "12.5000" and format_figures(units)["value_added"] == "-5.00"


def test_every_bad_field_is_named():
    with pytest.raises(BadFigures) as err:
        parse_figures({"land": "-1", "tax": "1.001", "profit": "3", "emissions.": "1", "energy": "x"})
    assert sorted((p.field, p.reason) for p in err.value.problems) == [
        ("emissions.", "unknown_field"), ("energy", "amount_not_a_number"), ("land", "amount_must_not_be_negative"),
        ("profit", "unknown_field"), ("tax", "amount_exceeds_scale")]
    assert err.value.reason == "invalid_figures"


def test_a_part_sources_every_field_to_its_department():
    part = part_from_figures(code(1), 2023, "ecology", {"emissions.COD": 12000, "land": 10000})
    assert part.emissions == {"COD": 12000} and part.land == 10000
    assert part.sources == {"emissions.COD": "ecology", "land": "ecology"}


@given(st.dictionaries(st.sampled_from(["land", "tax", "revenue", "value_added", "energy", "electricity", "rnd",
                                        "employees", "emissions.COD", "emissions.NH3-N", "emissions.bad name"]),
                       st.integers(-10**20, 10**20)))
def test_format_figures_is_format_amount_at_each_fields_scale(figures):
    assert format_figures(figures) == {k: format_amount(v, scale_of(k) or 0) for k, v in sorted(figures.items())}
