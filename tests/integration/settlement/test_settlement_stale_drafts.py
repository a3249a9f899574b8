"""A finalization leaves no draft behind that was computed against the history before it.

While a county has closed no period, any period may be drafted, and each draft takes every earlier month's facts
(the first statement takes them all). Once one of those periods is finalized, a draft of a later period computed
before that counts the finalized period's facts a second time: a finance office reading it — or an enterprise's
compensation (GET /enterprises/{code}/compensation, ``draft_total``), or a party's position — saw January's
compensation and tax share in January (finalized) and again in February's draft. Such drafts go with the
finalization (``StatementsRepository.drop_drafts_overlapping``); on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date

from services.settlement.domain import (
    VAT,
    ConsumedLot,
    LineKind,
    QuotaAllocation,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementPolicy,
    TaxReceipt,
)
from services.settlement.domain.periods import Period
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.inputs import InputsRepository
from services.settlement.storage.statements import StatementsRepository
from tests.integration.settlement.support import credit_code, new_county
from tests.unit.settlement.settlement_factories import at


def test_a_draft_computed_before_a_finalization_does_not_count_its_facts_again(runtime):
    C = new_county()
    E, T, P = credit_code(C, 1), f"township:{C}101", f"park:P{C}"
    with runtime.db.sessions() as s, s.begin():
        repo = InputsRepository(s)
        repo.add_policy(SettlementPolicy(policy_id="POL", version=1, county=C, compensation_bp=3000, township_weight=4,
                                         park_weight=3, fund_weight=3), "test", at(2025, 1, 1))
        repo.add_agreement(RevenueSharingAgreement(
            agreement_id=f"AG{C}", version=1, effective_from=date(2024, 1, 1), enterprise=E, origin=T, destination=P,
            local_shares_bp={VAT: 5000}, schedule=(ScheduleStep(1, None, 6, 4),), start=date(2024, 1, 1),
            end=date(2027, 12, 31), remainder_to=P), C, "test", at(2025, 1, 1))
        repo.add_receipt(TaxReceipt(receipt_id=f"jan-{C}", enterprise=E, month=Period.parse("2025-01"), tax_kind=VAT,
                                    amount_fen=100_000_000, received_at=at(2025, 2, 2)), "http", None)
        alloc = QuotaAllocation(allocation_id=f"REQ{C}:LAND", project_id="PRJ1", asset="LAND", amount_units=10,
                                price="1.00", amount_due_fen=100_000_000, destination=P,
                                lots=(ConsumedLot(f"L1-{C}", E, T, 10),), allocated_on=date(2025, 1, 15),
                                received_at=at(2025, 1, 20))
        repo.add_allocation(alloc, C, f"REQ{C}", f"ev-{C}")

    # nothing closed yet: January and February are both drafted, February taking January's facts as late ones
    StatementRuns(runtime, now=lambda: at(2025, 2, 3)).draft(C, "2025-01", "test")
    feb = StatementRuns(runtime, now=lambda: at(2025, 2, 3)).draft(C, "2025-02", "test").statement
    assert any(ln.allocation_id for ln in feb.lines)  # (what the stale draft held)
    jan = StatementRuns(runtime, now=lambda: at(2025, 2, 5)).finalize(C, "2025-01", "test").statement
    (comp,) = [ln for ln in jan.lines if ln.kind is LineKind.COMPENSATION]
    assert comp.amount_fen == 30_000_000  # 30% of 1,000,000.00

    with runtime.db.sessions() as s:
        repo = StatementsRepository(s)
        paid = repo.lines_to_payee(f"enterprise:{E}", (LineKind.COMPENSATION.value, LineKind.BUYBACK.value), C)
        positions = repo.party_totals_by_period(C, T)
        statements = [(h.period, h.status) for h in repo.headers(C)]
    # the enterprise's compensation once, the township's share once
    assert [(r.period, r.status, r.amount_fen) for r in paid] == [("2025-01", "finalized", 30_000_000)]
    assert sum(r.receivable_fen for r in positions) == sum(t.receivable_fen for t in jan.totals if t.party == T)
    assert statements == [("2025-01", "finalized")]

    # February drafted again: none of January's facts
    feb = StatementRuns(runtime, now=lambda: at(2025, 2, 10)).draft(C, "2025-02", "test").statement
    assert feb.lines == ()
