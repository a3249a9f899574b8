"""The quota projection's fold, without a database: events as the service writes them (dicts, checked
against the real contracts), folded by shared.replay.fold, read models compared with hand-written rows."""
from __future__ import annotations

import json

import pytest

from services.quota.replay import UNRECORDED, QuotaProjection, Units
from shared.envelope import latest
from shared.replay import compare, fold

C, T = "320612", "320612100"
ENT = "91320612MA0000001X"


def ev(name: str, **data) -> tuple[str, str]:
    """(event type, envelope JSON) of a payload the real contract accepts, dumped as the outbox stores it."""
    cls = latest(name)
    payload = cls.model_validate(data).model_dump(mode="json")
    env = {"id": f"e-{name}", "type": cls.type_name(), "subject": "s", "data": payload}
    return cls.type_name(), json.dumps(env)


def raw(name: str, data: dict) -> tuple[str, str]:
    """An event as an older writer stored it (fields missing), not passed through today's contract."""
    return latest(name).type_name(), json.dumps({"id": "old", "data": data})


def released(rid: str, status: str = "accepted", **extra) -> tuple[str, str]:
    body = dict(release_id=rid, enterprise_credit_code=ENT, township_code=T, county_code=C, asset="COD",
                amount="10.0001", reason="closure", basis="free", status=status, status_reason="exit_known",
                department="ecology", document_ref="通环收〔2024〕1号", released_on="2024-02-01")
    return ev("QuotaReleased", **{**body, **extra})


def lot(lot_id: str, asset: str, amount: str, retired: str, kind: str = "release", ref: str = ENT,
        price: str | None = None, dated: str = "2024-02-01", earns: bool | None = None) -> tuple[str, str]:
    """``earns`` None: written before LotCreated said whether the lot earns compensation (it did)."""
    extra = {} if earns is None else {"earns_compensation": earns}
    return ev("LotCreated", lot_id=lot_id, county_code=C, asset=asset, amount=amount, retired=retired,
              source_kind=kind, source_ref=ref, township_code=T, dated=dated,
              basis="paid" if price else "free", buyback_price_per_unit=price, **extra)


def transfers(*specs: tuple[str, str, str, str, str, str]) -> tuple[str, str]:
    """specs: (transfer_id, code, asset, amount, ref, debit -> credit as 'a>b')."""
    return ev("TransfersRequested", transfers=[
        dict(transfer_id=t, code=code, asset=a, amount=n, refs=[ref], debit_account=acc.split(">")[0],
             credit_account=acc.split(">")[1], metadata={"county_code": C}) for t, code, a, n, ref, acc in specs])


def request_ev(name: str, rid: str, **extra) -> tuple[str, str]:
    return ev(name, request_id=rid, project_id=f"P-{rid}", county_code=C, **extra)


def run(events: list[tuple[str, str]]) -> tuple[QuotaProjection, dict]:
    p = QuotaProjection()
    read, applied = fold(p, iter(events))
    assert read == applied == len(events)
    return p, p.rebuilt()


POOL, RETIRED, REG = f"county:{C}/pool/COD", f"county:{C}/retired/COD", "external:rights-register/COD"


def supply() -> list[tuple[str, str]]:
    return [
        released("R1", status="pending_verification", status_reason="exit_not_known"),
        released("R1"),  # the exit became known: the latest QuotaReleased wins
        lot("release:R1", "COD", "10.0001", "2.0001"),
        ev("QuotaRetired", lot_id="release:R1", county_code=C, asset="COD", amount="2.0001"),
        transfers(("quota/intake/release:R1", "quota_release_intake", "COD", "10.0001", "release:R1", f"{REG}>{POOL}"),
                  ("quota/retire/release:R1", "quota_retire", "COD", "2.0001", "release:R1", f"{POOL}>{RETIRED}")),
        released("R2", asset="ENERGY", amount="12.345", basis="paid", buyback_price_per_unit="800.00",
                 reason="upgrade_savings", status_reason="verification_not_required", released_on="2024-01-15"),
        lot("release:R2", "ENERGY", "12.345", "0.000", price="800.00", dated="2024-01-15", earns=False),
        ev("BuybackOwed", lot_id="release:R2", county_code=C, enterprise_credit_code=ENT, township_code=T,
           asset="ENERGY", amount="12.345", amount_due="9876.00"),
        lot("reclamation:RC1", "LAND", "12.0000", "0.0000", kind="reclamation", ref="RC1", dated="2024-05-01",
            earns=False),
    ]


def test_supply_folds_into_releases_lots_and_reclamations():
    _, m = run(supply())
    assert m["releases"]["R1"] == (C, ENT, T, "COD", 100001, "closure", "free", None, "通环收〔2024〕1号",
                                   "2024-02-01", "ecology", "accepted", "exit_known")
    assert m["releases"]["R2"][7] == 80000 and m["releases"]["R2"][9] == "2024-01-15"
    assert m["lots"] == {
        "release:R1": (C, "COD", 100001, 20001, 80000, "enterprise", ENT, T, "2024-02-01", "free", None, None, "R1",
                       True),
        "release:R2": (C, "ENERGY", 12345, 0, 12345, "enterprise", ENT, T, "2024-01-15", "paid", 80000, 987600, "R2",
                       False),
        "reclamation:RC1": (C, "LAND", 120000, 0, 120000, "reclamation", "RC1", T, "2024-05-01", "free", None, None,
                            "RC1", False),
    }
    assert m["reclamation_accepted"] == {"RC1": (C, T, "2024-05-01", 120000)}
    assert m["ledger_transfers"] == {
        "quota/intake/release:R1": ("intake", C, "COD", 100001, REG, POOL, None, "release:R1"),
        "quota/retire/release:R1": ("retire", C, "COD", 20001, POOL, RETIRED, None, "release:R1"),
    }


def lines(*pairs: tuple[str, str, str]) -> list[dict]:
    return [dict(asset=a, amount=n, approval_kind=k) for a, n, k in pairs]


COD = ("COD", "3.5", "environmental_impact")


def reserve(rid: str, *assets: str) -> tuple[str, str]:
    return transfers(*[(f"quota/reserve/{rid}/{a}", "quota_reserve", a, "3.5000", rid,
                        f"{POOL}>project:P-{rid}/{a}") for a in assets])


def test_a_request_moves_through_every_state_its_events_show():
    p, m = run(supply() + [request_ev("QuotaRequested", "Q1", lines=lines(COD, ("ENERGY", "1", "energy_review")))])
    assert m["requests"]["Q1"] == ("P-Q1", C, "requested", "")
    assert m["request_lines"] == {("Q1", "COD"): (0, 35000, "environmental_impact"),
                                  ("Q1", "ENERGY"): (1, 1000, "energy_review")}
    p, m = run(supply() + [request_ev("QuotaRequested", "Q1", lines=lines(COD)), reserve("Q1", "COD")])
    assert m["requests"]["Q1"][2] == "reserving", "the reserve command is the only trace of a granted round"
    allocated = request_ev(
        "QuotaAllocated", "Q1", asset="COD", amount="3.5000", price_per_unit="12000.00", amount_due="42000.00",
        allocated_on="2024-03-02", lots=[dict(lot_id="release:R1", source_kind="release", source_ref=ENT,
                                              township_code=T, amount="3.5000", amount_due="42000.00")])
    _, m = run(supply() + [request_ev("QuotaRequested", "Q1", lines=lines(COD)), reserve("Q1", "COD"),
                           request_ev("QuotaReserved", "Q1", lines=lines(COD)), allocated])
    assert m["requests"]["Q1"] == ("P-Q1", C, "allocated", "")
    assert m["allocations"] == {("Q1", "COD"): ("P-Q1", C, 35000, 1200000, 4200000, "2024-03-02")}
    assert m["consumptions"] == {("Q1", "release:R1"): ("P-Q1", C, "COD", "enterprise", ENT, T, 35000, 4200000, True)}
    assert m["lots"]["release:R1"][4] == 80000 - 35000, "remaining = amount - retired - consumed"
    assert m["ledger_transfers"]["quota/reserve/Q1/COD"] == (
        "reserve", C, "COD", 35000, POOL, "project:P-Q1/COD", "Q1", None)


def test_the_pool_sums_lots_allocations_and_the_requests_holding_quota():
    held = [request_ev("QuotaRequested", "Q2", lines=lines(COD)), reserve("Q2", "COD")]  # reserving: held
    waiting = [request_ev("QuotaRequested", "Q3", lines=lines(("COD", "1", "environmental_impact")))]
    closed = [request_ev("QuotaRequested", "Q4", lines=lines(COD)), reserve("Q4", "COD"),
              request_ev("QuotaReservationCancelled", "Q4", reason="withdrawn")]
    allocated = [request_ev("QuotaRequested", "Q1", lines=lines(COD)), reserve("Q1", "COD"),
                 request_ev("QuotaReserved", "Q1", lines=lines(COD), expires_at="2024-03-02T09:00:00.5+08:00"),
                 request_ev("QuotaAllocated", "Q1", asset="COD", amount="3.5000", price_per_unit="0.00",
                            amount_due="0.00", allocated_on="2024-03-02",
                            lots=[dict(lot_id="release:R1", source_kind="release", source_ref=ENT, township_code=T,
                                       amount="3.5000", amount_due="0.00")])]
    _, m = run(supply() + allocated + held + waiting + closed)
    # (released, retired, allocated, reserved, available): COD 10.0001 in, 2.0001 retired, 3.5 allocated (Q1),
    # 3.5 held by Q2 while the ledger is asked; Q3 waits and Q4 closed: neither holds anything
    assert m["pool"] == {(C, "COD"): (100001, 20001, 35000, 35000, 100001 - 20001 - 35000 - 35000),
                         (C, "ENERGY"): (12345, 0, 0, 0, 12345), (C, "LAND"): (120000, 0, 0, 0, 120000)}
    # until when Q1's reservation held, in UTC whatever zone the event was written in; only reserved ones
    assert m["reservation_deadlines"] == {"Q1": ("2024-03-02T01:00:00.500000+00:00",)}


@pytest.mark.parametrize("closing, state, reason", [
    (request_ev("QuotaRequestRejected", "Q1", reason="insufficient_quota"), "rejected", "insufficient_quota"),
    (request_ev("QuotaReservationCancelled", "Q1", reason="project withdrawn"), "cancelled", "project withdrawn"),
    (request_ev("QuotaReservationExpired", "Q1", reason="ledger_expired"), "expired", "ledger_expired"),
    (request_ev("QuotaRequestExpired", "Q1", reason="deadline_passed"), "expired", "deadline_passed"),
])
def test_closing_events_set_state_and_reason(closing, state, reason):
    _, m = run([request_ev("QuotaRequested", "Q1", lines=lines(COD)), reserve("Q1", "COD"), closing])
    assert m["requests"]["Q1"] == ("P-Q1", C, state, reason)


def test_a_chain_sent_again_keeps_the_first_ask_of_each_transfer():
    again = transfers(("quota/reserve/Q1/COD", "quota_reserve", "COD", "9.0000", "Q1", f"{POOL}>x"),
                      ("quota/reserve/Q1/NOX", "quota_reserve", "NOX", "1.0000", "Q1", f"{POOL}>y"))
    _, m = run([reserve("Q1", "COD"), again])
    assert m["ledger_transfers"]["quota/reserve/Q1/COD"][3] == 35000
    assert m["ledger_transfers"]["quota/reserve/Q1/NOX"][3] == 10000


def test_facts_an_older_event_lacks_are_not_compared_but_the_rest_is():
    old = dict(release_id="R9", enterprise_credit_code=ENT, township_code=T, county_code=C, asset="COD",
               amount="1.0000", reason="closure", basis="paid", status="accepted", status_reason="")
    _, m = run([raw("QuotaReleased", old), raw("QuotaReservationExpired",
                                               dict(request_id="Q9", project_id="P", county_code=C))])
    row = m["releases"]["R9"]
    assert row[7] is UNRECORDED and row[8] is UNRECORDED and row[9] is UNRECORDED and row[10] is UNRECORDED
    live = {"releases": {"R9": (C, ENT, T, "COD", 10000, "closure", "paid", 500, "doc", "2024-01-01", "ecology",
                                "accepted", "")},
            "requests": {"Q9": ("P", C, "expired", "deadline_passed")}}
    assert compare(live, m) == []
    live["releases"]["R9"] = live["releases"]["R9"][:11] + ("rejected", "")
    (d,) = compare(live, m)
    assert (d.model, d.key) == ("releases", "R9")
    # a free release written before the price field existed has no price: that one is known
    _, m = run([raw("QuotaReleased", {**old, "basis": "free"})])
    assert m["releases"]["R9"][7] is None


def test_events_about_a_lot_never_created_show_as_a_difference():
    _, m = run([ev("QuotaRetired", lot_id="release:ghost", county_code=C, asset="COD", amount="1.0000")])
    assert m["lots"]["release:ghost"][:4] == (None, None, None, 10000)
    (d,) = compare({"lots": {}}, {"lots": m["lots"]})
    assert d.live is None and d.key == "release:ghost"


def test_amount_strings_become_integers_of_the_smallest_unit():
    cod, money = Units(4), Units(2)
    assert [cod[s] for s in ("10.0001", "0.0000", "-0.5000", "3.5", "7", "3.5000")] == [100001, 0, -5000, 35000,
                                                                                        70000, 35000]
    assert money["42000.00"] == 4200000 and money["0.5"] == 50
    assert cod["10.0001"] == 100001 and len(cod) == 6, "remembered once per string"
    with pytest.raises(ValueError):
        cod["1.00001"]
