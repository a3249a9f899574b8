"""Figures at the edges: decimal strings in their contract units <-> integer units, never rounded."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.assessment.domain.county_scoring import RatioField
from services.assessment.domain.enterprise import POLLUTANTS
from services.assessment.domain.policy import default_policy
from services.assessment.domain.rows import INDICATOR_COLUMNS
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


@pytest.mark.parametrize("name, canonical, reason", [
    ("cod", "COD", "pollutant_name_case"), ("nox", "NOx", "pollutant_name_case"), ("NOX", "NOx", "pollutant_name_case"),
    ("so2", "SO2", "pollutant_name_case"), ("nh3-n", "NH3-N", "pollutant_name_case"), ("Vocs", "VOCs", "pollutant_name_case"),
    ("NH3N", "NH3-N", "pollutant_name_variant"),  # the ledger's asset code
])
def test_a_known_pollutant_spelled_otherwise_is_refused_with_its_spelling(name, canonical, reason):
    # the policy weights pollutants by exact name: 'emissions.nox' would be kept and never weighted
    with pytest.raises(BadFigures) as err:
        parse_figures({"land": "1", f"emissions.{name}": "1.2"})
    [problem] = err.value.problems
    assert (problem.field, problem.reason, err.value.reason) == (f"emissions.{name}", reason, reason)
    assert f"'{canonical}'" in problem.message and f"emissions.{canonical}" in problem.message


def test_known_pollutants_as_spelled_and_unknown_ones_are_taken():
    figures = {f"emissions.{p}": "1" for p in POLLUTANTS} | {"emissions.TP": "0.5", "emissions.Pb": "0.0001"}
    assert parse_figures(figures) == {k: 10000 for k in figures} | {"emissions.TP": 5000, "emissions.Pb": 1}


def test_the_known_pollutants_are_those_the_policy_weights_and_the_import_reads():
    assert set(default_policy("320623", 2023).emission_weights) <= set(POLLUTANTS)
    assert {f.split(".", 1)[1] for f in INDICATOR_COLUMNS if f.startswith("emissions.")} == set(POLLUTANTS)
    # so a parsed canonical figure is weighted
    part = part_from_figures(code(1), 2023, "ecology", parse_figures({"emissions.NOx": "2"}))
    assert RatioField.of("emissions", default_policy("320623", 2023)).weighted_emissions(part) == 20000
