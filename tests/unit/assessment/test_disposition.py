from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from services.assessment.domain.disposition import (
    CountyDecision,
    Disposition,
    RectificationTask,
    TaskStatus,
    recommend,
)
from services.assessment.domain.policy import DispositionRules

from .factories import YEAR, code, enterprise

RULES = DispositionRules()
CLOSE, RELOCATE, UPGRADE, NONE = Disposition.CLOSE, Disposition.RELOCATE, Disposition.UPGRADE, Disposition.NONE


@pytest.mark.parametrize(
    "flags, in_park, label, excluded, expected, reason_codes",
    [
        ({"ecological_control_zone"}, False, "A", False, CLOSE, {"flag_ecological_control_zone", "good_class_outside_park"}),
        ({"ecological_control_zone"}, True, "T", True, CLOSE, {"flag_ecological_control_zone", "not_evaluated"}),
        ({"backward_equipment"}, False, "B", False, CLOSE, {"flag_backward_equipment", "good_class_outside_park"}),
        ({"environmental_hazard"}, False, "D", False, CLOSE, {"class_with_environmental_hazard", "low_class_outside_park"}),
        ({"safety_hazard"}, True, "D", False, CLOSE, {"class_with_safety_hazard", "low_class_in_park"}),
        (set(), False, "D", False, RELOCATE, {"low_class_outside_park"}),
        (set(), False, "C", False, RELOCATE, {"low_class_outside_park"}),
        ({"environmental_hazard"}, False, "C", False, CLOSE, {"class_with_environmental_hazard", "low_class_outside_park"}),
        ({"safety_hazard"}, False, "B", False, CLOSE, {"class_with_safety_hazard", "good_class_outside_park"}),
        ({"environmental_hazard"}, True, "A", False, CLOSE, {"class_with_environmental_hazard", "good_class_in_park"}),
        (set(), False, "A", False, UPGRADE, {"good_class_outside_park"}),
        (set(), False, "B", False, UPGRADE, {"good_class_outside_park"}),
        (set(), True, "A", False, NONE, {"good_class_in_park"}),
        (set(), True, "C", False, UPGRADE, {"low_class_in_park"}),
        (set(), False, "T", True, NONE, {"not_evaluated"}),
        (set(), False, "C-", False, NONE, {"class_without_rule"}),
    ],
)
def test_recommendation_table(flags, in_park, label, excluded, expected, reason_codes):
    e = enterprise(1, in_park=in_park, **{f: True for f in flags})
    rec = recommend(e, label, RULES, excluded=excluded)
    assert rec.disposition == expected
    assert {r.code for r in rec.reasons} == reason_codes


LENIENT = DispositionRules(close_with_hazard_classes=("D",))  # "较多隐患" read as a hazard and class D


def test_hazard_detail_is_kept_on_relocation():
    rec = recommend(enterprise(1, environmental_hazard=True), "C", LENIENT)
    assert rec.disposition == RELOCATE and "environmental_hazard" in rec.reasons[-1].detail


def test_rules_are_settings():
    assert recommend(enterprise(1, safety_hazard=True), "C", LENIENT).disposition == RELOCATE
    assert recommend(enterprise(1, safety_hazard=True), "D", LENIENT).disposition == CLOSE


AT = datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))


def test_confirm_and_override():
    rec = recommend(enterprise(1), "D", RULES)
    ok = CountyDecision.confirm(code(1), YEAR, rec, by="县工信局 张三", at=AT)
    assert ok.decided == RELOCATE and not ok.overrides
    over = CountyDecision.override(code(1), YEAR, rec, CLOSE, by="县政府常务会", at=AT, reason="位于饮用水源保护区")
    assert over.overrides and over.recommended == RELOCATE and over.decided == CLOSE
    with pytest.raises(ValueError, match="says why"):
        CountyDecision.override(code(1), YEAR, rec, CLOSE, by="x", at=AT, reason=" ")
    with pytest.raises(ValueError, match="confirmation"):
        CountyDecision.override(code(1), YEAR, rec, RELOCATE, by="x", at=AT, reason="same")
    with pytest.raises(ValueError, match="time zone"):
        CountyDecision.confirm(code(1), YEAR, rec, by="x", at=datetime(2024, 3, 1))
    with pytest.raises(ValueError, match="who"):
        CountyDecision.confirm(code(1), YEAR, rec, by="", at=AT)


def test_task_lifecycle_and_overdue():
    rec = recommend(enterprise(1), "D", RULES)
    decision = CountyDecision.confirm(code(1), YEAR, rec, by="x", at=AT)
    task = RectificationTask.for_decision("T-1", decision, deadline=date(2024, 12, 31))
    assert task.status == TaskStatus.OPEN and task.disposition == RELOCATE
    assert not task.is_overdue(date(2024, 12, 31))  # the deadline day is on time
    assert task.is_overdue(date(2025, 1, 1))
    done = task.complete(date(2025, 1, 5), note="已搬入集聚区")
    assert done.status == TaskStatus.DONE and not done.is_overdue(date(2026, 1, 1)) and done.completed_late
    # as it stood on a day gone by: open and late on 3 January, closed on the 5th (on the day itself, no longer)
    assert done.is_overdue(date(2025, 1, 3)) and not done.is_overdue(date(2025, 1, 5))
    with pytest.raises(ValueError):
        done.complete(date(2025, 1, 6))
    with pytest.raises(ValueError, match="says why"):
        task.cancel(date(2024, 6, 1), "")
    cancelled = task.cancel(date(2024, 6, 1), "企业已注销")
    assert cancelled.status == TaskStatus.CANCELLED and not cancelled.is_overdue(date(2025, 1, 1))
    ordered = replace(task, note="更换燃煤锅炉")  # closing keeps what the task ordered
    assert (ordered.complete(date(2025, 1, 5), "已完成").note, ordered.complete(date(2025, 1, 5), "已完成").closing_note) \
        == ("更换燃煤锅炉", "已完成")
    assert (ordered.cancel(date(2024, 6, 1), "企业已注销").note, ordered.cancel(date(2024, 6, 1), "企业已注销").closing_note) \
        == ("更换燃煤锅炉", "企业已注销")
    assert task.status == TaskStatus.OPEN  # tasks are values: the original is unchanged


def test_no_task_for_none():
    rec = recommend(enterprise(1, in_park=True), "A", RULES)
    decision = CountyDecision.confirm(code(1), YEAR, rec, by="x", at=AT)
    with pytest.raises(ValueError):
        RectificationTask.for_decision("T-2", decision, deadline=date(2024, 12, 31))
