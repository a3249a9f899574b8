"""A quota allocation re-sent under the same id (request and asset) is a no-op only when every field is the same —
lots included; any difference is refused with ``allocation_conflict`` naming the field, and the first one stays.
Over Kafka the refusal goes to the quota topic's dead letter with that reason. On SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from services.settlement import intake
from services.settlement.domain import ProceedsError
from services.settlement.domain.proceeds import QuotaAllocation, SettlementPolicy, split_proceeds
from services.settlement.storage.inputs import InputsRepository
from shared.contracts import topics
from shared.contracts.quota import ConsumedLotOut, QuotaAllocated
from shared.contracts.topics import dlq
from tests.integration.settlement.support import (
    credit_code,
    end_offsets,
    envelope,
    headers_of,
    isolated_service,
    new_county,
    publish,
    read_from,
)
from tests.support.services import wait_for


def lot(C: str, n: int, amount: str = "3.0000", township: str = "101", source_ref: str | None = None) -> ConsumedLotOut:
    return ConsumedLotOut(lot_id=f"L{n}-{C}", source_kind="release", source_ref=source_ref or credit_code(C, n),
                          township_code=f"{C}{township}", amount=amount, amount_due="50000.00")


def allocation(C: str, lots: list[ConsumedLotOut], **over) -> QuotaAllocated:
    fields = dict(request_id=f"REQ-{C}", project_id=f"PRJ-{C}", county_code=C, asset="LAND", amount="6.0000",
                  price_per_unit="16666.67", amount_due="100000.00", park_id=f"P{C}", allocated_on=date(2025, 2, 10),
                  lots=lots)
    fields.update(over)
    return QuotaAllocated(**fields)


def changes(C: str, lots: list[ConsumedLotOut]) -> list[tuple[str, dict]]:
    """(the field named in the refusal, what differs) — each alone."""
    return [
        ("project_id", dict(project_id=f"PRJ2-{C}")),
        ("price_per_unit", dict(price_per_unit="20000.00")),
        ("amount_due", dict(amount_due="120000.00")),
        ("park_id", dict(park_id=None)),
        ("allocated_on", dict(allocated_on=date(2025, 3, 10))),
        ("county_code", dict(county_code=new_county())),
        ("lots", dict(lots=[lots[0], lot(C, 3)])),  # another lot, same units
        ("lots", dict(lots=[lots[0], lot(C, 2, amount="2.0000"), lot(C, 3, amount="1.0000")])),
        ("lots", dict(lots=[lots[0], lot(C, 2, township="102")])),  # freed elsewhere
        ("lots", dict(lots=[lots[0], lot(C, 2, source_ref=credit_code(C, 8))])),  # by another enterprise
        ("lots", dict(lots=[lots[0], lots[1].model_copy(update={"earns_compensation": False})])),  # an upgrade's
    ]


def test_a_resent_allocation_is_the_same_or_refused_by_field(runtime):
    C = new_county()
    lots = [lot(C, 1), lot(C, 2)]
    first = allocation(C, lots)

    def record(ev: QuotaAllocated, event_id: str) -> bool:
        return runtime.transaction(lambda uow: intake.record_allocation(uow.session, ev, event_id=event_id))

    def stored():
        with runtime.db.sessions() as s:
            repo = InputsRepository(s)
            row = repo.allocation_row(f"REQ-{C}:LAND")
            return tuple(row._mapping.values()), repo.allocation_lots(f"REQ-{C}:LAND")

    assert record(first, f"e1-{C}") is True
    before = stored()
    # the same again, lots in another order: recorded once
    assert record(allocation(C, lots[::-1]), f"e2-{C}") is False
    for field, change in changes(C, lots):
        with pytest.raises(ProceedsError) as e:
            record(allocation(C, **{"lots": lots, **change}), f"e3-{C}")
        assert e.value.reason == "allocation_conflict" and field in str(e.value), (field, str(e.value))
    assert stored() == before


def test_the_units_of_a_lot_that_earns_no_compensation_compensate_nobody(runtime):
    """An upgrade's lot (the enterprise stays, quota says earns_compensation false) is recorded without its
    enterprise: half the units earn no 腾退补偿, so 30 % of half the amount due goes to the enterprise that left
    and none to the one that upgraded; the rest is shared as always."""
    C = new_county()
    left, stayed = lot(C, 1), lot(C, 2).model_copy(update={"earns_compensation": False})
    assert runtime.transaction(lambda uow: intake.record_allocation(uow.session, allocation(C, [left, stayed]),
                                                                    event_id=f"e1-{C}"))
    with runtime.db.sessions() as s:
        stored = InputsRepository(s).allocation_lots(f"REQ-{C}:LAND")
    assert [(x.lot_id, x.enterprise, x.units) for x in stored] == [
        (f"L1-{C}", left.source_ref, 3_000_000), (f"L2-{C}", None, 3_000_000)]
    a = QuotaAllocation(allocation_id="A", project_id="P", asset="LAND", amount_units=6_000_000, price="16666.67",
                        amount_due_fen=10_000_000, destination=f"park:P{C}", lots=tuple(stored),
                        allocated_on=date(2025, 2, 10), received_at=datetime(2025, 2, 10, tzinfo=timezone.utc))
    policy = SettlementPolicy(policy_id="POL", version=1, county=C, compensation_bp=3000, township_weight=4,
                              park_weight=3, fund_weight=3)
    split = split_proceeds(a, policy)
    assert split.compensation == {left.source_ref: 1_500_000}  # floor(10,000,000 * 1/2) * 30 %
    assert sum(split.shares.values()) == 10_000_000 - 1_500_000


def test_a_resent_allocation_with_other_lots_goes_to_the_dead_letter_over_kafka(db_url, kafka_bootstrap):
    C = new_county()
    lots = [lot(C, 1), lot(C, 2)]
    dlq_start = end_offsets(kafka_bootstrap, [dlq(topics.QUOTA_EVENTS)])
    with isolated_service("settlement", db_url, kafka_bootstrap) as (rt, _):
        first = publish(kafka_bootstrap, topics.QUOTA_EVENTS, allocation(C, lots), subject=f"REQ-{C}",
                        source="/countypool/quota")
        same = publish(kafka_bootstrap, topics.QUOTA_EVENTS, allocation(C, lots[::-1]), subject=f"REQ-{C}",
                       source="/countypool/quota")
        other = publish(kafka_bootstrap, topics.QUOTA_EVENTS, allocation(C, [lots[0], lot(C, 3)]), subject=f"REQ-{C}",
                        source="/countypool/quota")

        def all_dead(recs):
            return other in {envelope(r)["id"] for r in recs}

        dead = {envelope(r)["id"]: headers_of(r) for r in read_from(kafka_bootstrap, dlq_start, all_dead)}
        assert (dead[other]["dlq-reason"], "lots" in dead[other]["dlq-error"]) == ("allocation_conflict", True)
        assert first not in dead and same not in dead

        def lots_stored():
            with rt.db.sessions() as s:
                return [x.lot_id for x in InputsRepository(s).allocation_lots(f"REQ-{C}:LAND")]

        assert wait_for(lots_stored, what="the allocation") == [f"L1-{C}", f"L2-{C}"]
