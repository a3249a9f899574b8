"""A consumer poll applied together (services.settlement.handlers.apply_batch: runs of lots and buy-backs
written at once) leaves exactly what applying its messages one at a time leaves: the same lots and buy-backs,
the same enterprises known from the same source with the same names (order matters there), the same
refusals, and nothing of what was refused."""
from __future__ import annotations

import json
import logging
from collections import namedtuple
from datetime import datetime, timezone

from sqlalchemy import select

import services.settlement.main as settlement
from services.settlement.storage import tables as T
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseRegistered
from shared.contracts.ledger import TransferPosted
from shared.contracts.quota import BuybackOwed, LotCreated
from shared.contracts.settlement import TaxReceiptReported
from shared.envelope import new_envelope
from shared.settings import load_settings
from tests.integration.settlement.support import credit_code, new_county
from tests.support.services import TOKENS

Record = namedtuple("Record", "topic partition offset key value headers", defaults=((),))  # what the consumer reads


def _poll(C: str) -> list[Record]:
    E1, E2, STRANGER = credit_code(C, 1), credit_code(C, 2), credit_code(C, 9)

    def lot(n: int, enterprise: str) -> LotCreated:
        return LotCreated(lot_id=f"LOT-{C}-{n}", county_code=C, asset="COD", amount="2.0000", retired="0.4000",
                          source_kind="release", source_ref=enterprise, township_code=f"{C}10{n}", dated="2025-05-01",
                          basis="free")

    def buyback(n: int, enterprise: str, due: str = "48000.00") -> BuybackOwed:
        return BuybackOwed(lot_id=f"LOT-{C}-{n}", county_code=C, enterprise_credit_code=enterprise,
                           township_code=f"{C}10{n}", asset="COD", amount="1.6000", amount_due=due)

    def receipt(rid: str, enterprise: str) -> TaxReceiptReported:
        return TaxReceiptReported(receipt_id=rid, enterprise_credit_code=enterprise, month="2025-06", tax_kind="VAT",
                                  amount="1000.00")

    events = [
        (topics.ASSESSMENT_EVENTS, EnterpriseRegistered(credit_code=E1, name="甲化工", county_code=C,
                                                        township_code=f"{C}101", in_park=False), "/countypool/assessment"),
        (topics.QUOTA_EVENTS, lot(1, E1), "/countypool/quota"),
        (topics.QUOTA_EVENTS, lot(2, E2), "/countypool/quota"),
        (topics.QUOTA_EVENTS, buyback(2, E2), "/countypool/quota"),
        (topics.QUOTA_EVENTS, buyback(2, E2), "/countypool/quota"),  # the same again (another event id): no effect
        (topics.QUOTA_EVENTS, buyback(2, E2, "47000.00"), "/countypool/quota"),  # buyback_conflict
        (topics.QUOTA_EVENTS, buyback(5, E1, "0.00"), "/countypool/quota"),  # invalid_amount: nothing of it
        (topics.INTAKE_SETTLEMENT, receipt(f"r1-{C}", STRANGER), "/departments/tax"),  # waits for its enterprise
        (topics.QUOTA_EVENTS, lot(3, E2), "/countypool/quota"),
        # E2 is known from its lot already: the register's name comes too late (first known stays)
        (topics.ASSESSMENT_EVENTS, EnterpriseRegistered(credit_code=E2, name="乙材料", county_code=C,
                                                        township_code=f"{C}102", in_park=True), "/countypool/assessment"),
        (topics.LEDGER_EVENTS, TransferPosted(transfer_id=f"quota/intake/release:{C}", debit_account="external:x",
                                              credit_account=f"county:{C}/pool", asset="COD", amount="2.0000",
                                              code="release", at=datetime.now(timezone.utc)), "/countypool/ledger"),
        (topics.INTAKE_SETTLEMENT, receipt(f"r2-{C}", E1), "/departments/tax"),
        (topics.QUOTA_EVENTS, lot(4, E1), "/countypool/quota"),
    ]
    return [Record(topic, 0, i, b"k", new_envelope(ev, subject="k", source=source).to_json())
            for i, (topic, ev, source) in enumerate(events)]


def credit_code_of(rec: Record) -> str:
    data = json.loads(rec.value)["data"]
    return data.get("credit_code") or data["source_ref"]


def _state(runtime, C: str) -> dict:
    with runtime.db.sessions() as s:
        return {
            "lots": s.execute(select(T.quota_lots.c.lot_id, T.quota_lots.c.source_ref, T.quota_lots.c.township_code)
                              .where(T.quota_lots.c.county_code == C).order_by(T.quota_lots.c.lot_id)).all(),
            "enterprises": s.execute(select(T.enterprises.c.credit_code, T.enterprises.c.name,
                                            T.enterprises.c.known_from).where(T.enterprises.c.county_code == C)
                                     .order_by(T.enterprises.c.credit_code)).all(),
            "buybacks": s.execute(select(T.buybacks.c.buyback_id, T.buybacks.c.enterprise, T.buybacks.c.amount_fen)
                                  .where(T.buybacks.c.county_code == C).order_by(T.buybacks.c.buyback_id)).all(),
            "receipts": s.execute(select(T.tax_receipts.c.receipt_id).where(T.tax_receipts.c.receipt_id.like(f"%-{C}"))
                                  .order_by(T.tax_receipts.c.receipt_id)).scalars().all(),
            "waiting": s.execute(select(T.waiting_inputs.c.kind, T.waiting_inputs.c.input_id)
                                 .where(T.waiting_inputs.c.input_id.like(f"%-{C}"))).all(),
            "inbox": sorted(s.execute(select(T.messaging["inbox"].c.event_type, T.messaging["inbox"].c.outcome)).all()),
        }


def _runtime(url: str, bootstrap: str):
    runtime, _ = settlement.build(load_settings("settlement", database_url=url, kafka_bootstrap_servers=bootstrap,
                                                auth_tokens_file=TOKENS))
    runtime.migrate()
    return runtime


def test_a_poll_applied_together_leaves_what_one_at_a_time_leaves(db_url, kafka_bootstrap, tmp_path, caplog):
    C = new_county()
    records = _poll(C)
    together, alone = _runtime(db_url, kafka_bootstrap), _runtime(f"sqlite:///{tmp_path / 'alone.sqlite3'}",
                                                                   kafka_bootstrap)
    try:
        with caplog.at_level(logging.WARNING, logger="shared.consumer"):
            together.consumer._apply(records)
        assert not [r for r in caplog.records if "batch handler failed" in r.getMessage()], "the batch path ran"
        for rec in records:
            alone.consumer._apply([rec])
        got, expected = _state(together, C), _state(alone, C)
        assert got == expected
        E1, E2 = credit_code_of(records[0]), credit_code_of(records[2])
        assert {code: (name, known) for code, name, known in got["enterprises"]} == {
            E1: ("甲化工", "assessment"), E2: (None, "quota")} and len(got["lots"]) == 4
        assert got["receipts"] == [f"r2-{C}"], "the stranger's receipt is not taken in"
        assert got["waiting"] == [("tax_receipt", f"r1-{C}")], "it waits for its enterprise"
        assert got["buybacks"] == [(f"buyback:LOT-{C}-2", E2, 4_800_000)]
        assert together.consumer.stats.dead_lettered == alone.consumer.stats.dead_lettered == 2
        assert [o for t, o in got["inbox"] if t.endswith("TransferPosted.v1")] == ["ignored"]
    finally:
        together.db.dispose()
        alone.db.dispose()
