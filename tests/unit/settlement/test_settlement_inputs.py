"""Parties, periods, agreements, receipts and proceeds: parsing, resolution, and refusals with reasons."""
from __future__ import annotations

from datetime import date

import pytest

from services.settlement.domain import (
    CIT,
    VAT,
    AgreementBook,
    AgreementError,
    BuyBack,
    PartyError,
    PartyKind,
    PeriodError,
    ProceedsError,
    ReceiptError,
    ScheduleStep,
    StatisticsReport,
    resolve_correction,
    split_proceeds,
    validate_receipt,
    validate_statistics_report,
)
from services.settlement.domain import parties
from services.settlement.domain.periods import Period, PeriodKind, ensure_next_to_close, ensure_period_ended
from services.settlement.domain.proceeds import validate_allocation, validate_buyback
from settlement_factories import FUND, P1, T1, T2, agreement, allocation, at, policy, receipt


# -- parties ------------------------------------------------------------------------------------------------
def test_party_forms_and_kinds():
    assert parties.township("320623101") == T1
    assert parties.county_fund("320623") == FUND
    assert parties.party_kind(FUND) is PartyKind.COUNTY_FUND
    assert parties.party_kind("county:320623/treasury") is PartyKind.COUNTY_TREASURY
    assert parties.party_kind("enterprise:91320623MA1XXXXX0Q") is PartyKind.ENTERPRISE
    assert parties.party_code(FUND) == "320623"
    assert parties.ledger_account(P1) == "park:P1/CNY"
    for bad in ("township:", "nation:1", "county:1/bank", "park:a b", ""):
        with pytest.raises(PartyError) as e:
            parties.party_kind(bad)
        assert e.value.reason == "invalid_party"
    with pytest.raises(PartyError) as e:
        parties.require_party(P1, PartyKind.TOWNSHIP, role="origin")
    assert e.value.reason == "wrong_party_kind"


# -- periods ------------------------------------------------------------------------------------------------
def test_period_parsing_containment_ordering_next():
    q1 = Period.parse("2026-Q1")
    assert (q1.kind, q1.start, q1.end) == (PeriodKind.QUARTER, date(2026, 1, 1), date(2026, 3, 31))
    assert Period.parse("2026-02").end == date(2026, 2, 28)
    assert Period.parse("2024-02").end == date(2024, 2, 29)
    assert Period.parse("2026").label == "2026"
    assert q1.contains(date(2026, 3, 31)) and not q1.contains(date(2026, 4, 1))
    assert q1.contains(Period.parse("2026-02")) and not q1.contains(Period.parse("2026"))
    assert Period.parse("2026-12").next().label == "2027-01"
    assert Period.parse("2026-Q4").next().label == "2027-Q1"
    assert Period.parse("2026-01").previous().label == "2025-12"
    assert sorted([Period.parse(x) for x in ("2026", "2026-Q1", "2025-12", "2026-01")]) == [
        Period.parse(x) for x in ("2025-12", "2026-01", "2026-Q1", "2026")]
    assert [m.label for m in q1.months()] == ["2026-01", "2026-02", "2026-03"]
    assert Period.containing(date(2026, 8, 9), "quarter").label == "2026-Q3"
    for bad in ("2026-13", "2026-Q5", "26-01", "2026/01", "0000"):
        with pytest.raises(PeriodError) as e:
            Period.parse(bad)
        assert e.value.reason == "invalid_period"


def test_periods_are_closed_in_order():
    ensure_next_to_close(Period.parse("2026-03"), None)
    ensure_next_to_close(Period.parse("2026-02"), Period.parse("2026-01"))
    ensure_next_to_close(Period.parse("2026-Q2"), Period.parse("2026-03"))  # a change of cadence without a gap
    with pytest.raises(PeriodError) as e:
        ensure_next_to_close(Period.parse("2026-03"), Period.parse("2026-01"))
    assert e.value.reason == "previous_period_not_closed"
    with pytest.raises(PeriodError) as e:
        ensure_next_to_close(Period.parse("2026-Q1"), Period.parse("2026-01"))
    assert e.value.reason == "period_already_closed"
    with pytest.raises(PeriodError) as e:
        ensure_period_ended(Period.parse("2026-01"), date(2026, 1, 31))
    assert e.value.reason == "period_not_ended"
    ensure_period_ended(Period.parse("2026-01"), date(2026, 2, 1))


# -- agreements ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "over, reason",
    [
        (dict(start=date(2023, 1, 15)), "start_not_first_of_month"),
        (dict(end=date(2027, 12, 30)), "end_not_last_of_month"),
        (dict(destination=T1), "origin_equals_destination"),
        (dict(remainder_to=FUND), "remainder_to_not_a_party"),
        (dict(local_shares_bp={}), "no_taxes"),
        (dict(local_shares_bp={"vat": 5000}), "invalid_tax_kind"),
        (dict(local_shares_bp={VAT: 10_001}), "invalid_local_share"),
        (dict(schedule=(ScheduleStep(1, 3, 6, 4),)), "invalid_schedule"),  # years 4-5 have no split
        (dict(schedule=(ScheduleStep(1, 2, 6, 4), ScheduleStep(4, None, 5, 5))), "invalid_schedule"),
        (dict(schedule=(ScheduleStep(1, None, 0, 0),)), "invalid_schedule"),
        (dict(guaranteed_minimum_fen=-1), "invalid_minimum"),
        (dict(statistics_weights=(0, 0)), "invalid_statistics_weights"),
        (dict(origin="enterprise:E1"), "wrong_party_kind"),
        # it would "pay" its own shortfall: a top-up and a ledger transfer from an account to itself
        (dict(guaranteed_minimum_fen=1_000, minimum_payer=T1), "minimum_payer_is_origin"),
        (dict(version=0), "invalid_version"),
    ],
)
def test_agreement_refusals(over, reason):
    with pytest.raises(AgreementError) as e:
        agreement(**over)
    assert e.value.reason == reason


def test_year_index_and_weights():
    a = agreement(start=date(2023, 2, 1))
    assert a.years == 5
    assert a.year_index(Period.parse("2026-01")) == 3 and a.weights(3) == (6, 4)
    assert a.year_index(Period.parse("2026-02")) == 4 and a.weights(4) == (5, 5)
    assert a.year_closed_by(Period.parse("2024-01")) == 1
    assert a.year_closed_by(Period.parse("2027-12")) == 5  # the short last year closes with the agreement
    assert a.year_closed_by(Period.parse("2024-02")) is None


def test_version_resolution():
    v1 = agreement()
    v2 = agreement(version=2, effective_from=date(2025, 7, 1), local_shares_bp={VAT: 5000})
    book = AgreementBook([v2, v1])
    assert book.version_in_force("A1", date(2025, 6, 30)) == v1
    assert book.version_in_force("A1", date(2025, 7, 1)) == v2
    assert book.version_in_force("A1", date(2022, 1, 1)) is None
    assert book.resolve("E1", CIT, Period.parse("2025-06")) == v1
    assert book.resolve("E1", CIT, Period.parse("2025-07")) is None  # v2 no longer shares CIT
    assert book.resolve("E1", VAT, Period.parse("2028-01")) is None  # after the end
    assert book.resolve("E2", VAT, Period.parse("2025-07")) is None


def test_overlapping_agreements_are_refused():
    a = agreement()
    b = agreement(agreement_id="B1", start=date(2027, 6, 1), effective_from=date(2027, 6, 1), end=date(2029, 5, 31),
                  local_shares_bp={CIT: 4000})
    with pytest.raises(AgreementError) as e:
        AgreementBook([a, b])
    assert e.value.reason == "overlapping_agreements"
    assert "A1@v1" in str(e.value) and "B1@v1" in str(e.value) and "2027-06" in str(e.value)
    # the same enterprise under two agreements for different taxes, or one after the other, is fine
    AgreementBook([a, agreement(agreement_id="B2", local_shares_bp={"LAND_USE": 10_000})])
    AgreementBook([a, agreement(agreement_id="B3", start=date(2028, 1, 1), effective_from=date(2028, 1, 1),
                                end=date(2028, 12, 31))])
    # an amendment that ends the first agreement early makes room for the second
    a2 = agreement(version=2, effective_from=date(2025, 1, 1), end=date(2027, 5, 31))
    AgreementBook([a, a2, b])


def test_agreement_book_refusals():
    with pytest.raises(AgreementError) as e:
        AgreementBook([agreement(), agreement(remainder_to=T1)])
    assert e.value.reason == "duplicate_version"
    AgreementBook([agreement(), agreement()])  # the same version delivered twice is the same version
    with pytest.raises(AgreementError) as e:
        AgreementBook([agreement(), agreement(version=2, effective_from=date(2023, 1, 1))])
    assert e.value.reason == "version_order"
    with pytest.raises(AgreementError) as e:
        AgreementBook([agreement(), agreement(version=2, effective_from=date(2024, 1, 1), enterprise="E2")])
    assert e.value.reason == "amendment_changes_enterprise"
    with pytest.raises(AgreementError) as e:
        AgreementBook([agreement(statistics_weights=(1, 1)),
                       agreement(agreement_id="S", local_shares_bp={"X": 1}, statistics_weights=(1, 1))])
    assert e.value.reason == "overlapping_agreements"


# -- receipts -----------------------------------------------------------------------------------------------
NOW = at(2026, 3, 15)


def test_receipt_validation_reasons():
    ok = receipt("r1", "2026-02", 100, at(2026, 3, 1))
    assert validate_receipt(ok, now=NOW, known_enterprises={"E1"}) is ok
    assert validate_receipt(receipt("r", "2026-03", 100, at(2026, 3, 1)), now=NOW) is not None  # current month is fine
    cases = [
        (receipt("r", "2026-02", 100, at(2026, 3, 1), enterprise="E9"), "unknown_enterprise"),
        (receipt("r", "2026-02", -5, at(2026, 3, 1)), "negative_tax"),
        (receipt("r", "2026-02", 0, at(2026, 3, 1)), "zero_tax"),
        (receipt("r", "2026-04", 100, at(2026, 3, 1)), "period_in_future"),
        (receipt("r", "2026-02", 100, at(2026, 3, 16)), "received_in_future"),
        (receipt("r", "2026-02", 100, at(2026, 3, 1), tax="vat"), "invalid_tax_kind"),
        (receipt("r", "2026-02", 100, at(2026, 3, 1), corrects="r"), "correction_of_itself"),
        (receipt("r", "2026-02", 100, at(2026, 3, 1), corrects="r0"), "correction_not_resolved"),
        (receipt("bad id", "2026-02", 100, at(2026, 3, 1)), "invalid_id"),
    ]
    for r, reason in cases:
        with pytest.raises(ReceiptError) as e:
            validate_receipt(r, now=NOW, known_enterprises={"E1"})
        assert e.value.reason == reason, r
    from datetime import datetime

    with pytest.raises(ReceiptError) as e:
        validate_receipt(receipt("r", "2026-02", 100, datetime(2026, 3, 1)), now=NOW)
    assert e.value.reason == "received_at_not_timezone_aware"
    # a correction may bring the amount to zero
    zero = receipt("r2", "2026-02", 0, at(2026, 3, 2), corrects="r1", replaced=100)
    assert validate_receipt(zero, now=NOW).delta_fen == -100


def test_resolve_correction():
    original = receipt("r1", "2026-02", 100, at(2026, 3, 1))
    fixed = resolve_correction(receipt("r2", "2026-02", 130, at(2026, 3, 2), corrects="r1"), original)
    assert (fixed.replaced_amount_fen, fixed.delta_fen) == (100, 30)
    for corr, reason, kw in [
        (receipt("r2", "2026-01", 130, at(2026, 3, 2), corrects="r1"), "correction_mismatch", {}),
        (receipt("r2", "2026-02", 130, at(2026, 3, 2), tax=CIT, corrects="r1"), "correction_mismatch", {}),
        (receipt("r2", "2026-02", 130, at(2026, 2, 28), corrects="r1"), "correction_before_original", {}),
        (receipt("r2", "2026-02", 130, at(2026, 3, 2), corrects="r0"), "correction_target_mismatch", {}),
        (receipt("r2", "2026-02", 130, at(2026, 3, 2), corrects="r1"), "already_corrected", {"already_corrected": True}),
    ]:
        with pytest.raises(ReceiptError) as e:
            resolve_correction(corr, original, **kw)
        assert e.value.reason == reason


def test_statistics_report_validation():
    rep = StatisticsReport(report_id="s", enterprise="E1", month=Period.parse("2026-02"), measure="value_added",
                           amount_fen=5, received_at=at(2026, 3, 1))
    validate_statistics_report(rep, now=NOW)
    from dataclasses import replace

    with pytest.raises(ReceiptError) as e:
        validate_statistics_report(replace(rep, measure="profit"), now=NOW)
    assert e.value.reason == "unknown_measure"
    with pytest.raises(ReceiptError) as e:
        validate_statistics_report(rep, now=NOW, known_enterprises=set())
    assert e.value.reason == "unknown_enterprise"


# -- proceeds -----------------------------------------------------------------------------------------------
def test_proceeds_refusals():
    good = allocation("A", 100, [("L1", "E1", T1, 5)])
    validate_allocation(good)
    from dataclasses import replace

    for bad, reason in [
        (replace(good, amount_units=6), "lots_do_not_match_amount"),
        (replace(good, lots=()), "no_lots"),
        (replace(good, amount_due_fen=-1), "invalid_amount_due"),
        (allocation("A", 100, [("L1", "E1", T1, 5), ("L2", "E1", T1, 0)]), "invalid_lot_units"),
        (allocation("A", 100, [("L1", "E1", "enterprise:E1", 5)]), "wrong_party_kind"),
    ]:
        with pytest.raises(ProceedsError) as e:
            validate_allocation(bad)
        assert e.value.reason == reason
    with pytest.raises(ProceedsError) as e:
        validate_buyback(BuyBack(buyback_id="B", enterprise="E1", lot_id="L", amount_fen=0, agreed_on=date(2026, 1, 1),
                                 received_at=at(2026, 1, 1)))
    assert e.value.reason == "invalid_amount"
    with pytest.raises(ProceedsError) as e:
        policy(compensation_bp=10_001)
    assert e.value.reason == "invalid_compensation_share"
    with pytest.raises(ProceedsError) as e:
        policy(township_weight=0, park_weight=0, fund_weight=0)
    assert e.value.reason == "invalid_proceeds_weights"


def test_split_proceeds_single_enterprise_and_zero_compensation():
    parts = split_proceeds(allocation("A", 999, [("L1", "E1", T2, 7)]), policy(compensation_bp=0))
    assert parts.compensation == {"E1": 0}
    # 999 by 4x7 : 3x7 : 3x7 -> 399 / 299 / 299 (+2 to the fund)
    assert parts.shares == {T2: 399, P1: 299, FUND: 301}
