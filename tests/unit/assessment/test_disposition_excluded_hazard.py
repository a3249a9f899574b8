"""A county that lists the exclusion label (T) among its close-with-hazard classes has hazards close those
enterprises too; the shipped rules (A-D) leave a T enterprise with a hazard at NONE, as before."""
from services.assessment.domain.disposition import Disposition, recommend
from services.assessment.domain.policy import DispositionRules

from .factories import enterprise


def test_the_setting_reaches_excluded_enterprises():
    rules = DispositionRules(close_with_hazard_classes=("A", "B", "C", "D", "T"))
    rec = recommend(enterprise(1, under_two_years=True, safety_hazard=True), "T", rules, excluded=True)
    assert rec.disposition == Disposition.CLOSE
    assert {r.code for r in rec.reasons} == {"class_with_safety_hazard", "not_evaluated"}


def test_shipped_rules_leave_t_alone():
    rec = recommend(enterprise(1, utility=True, environmental_hazard=True), "T", DispositionRules(), excluded=True)
    assert rec.disposition == Disposition.NONE and [r.code for r in rec.reasons] == ["not_evaluated"]
    plain = recommend(enterprise(1, utility=True), "T", DispositionRules(close_with_hazard_classes=("T",)), excluded=True)
    assert plain.disposition == Disposition.NONE  # no hazard, nothing to close
