"""Review (a county planner and auditor trying to break the quota service), 2026-12-01.

Region codes are ASCII digits: county_code_problem / township_code_problem (services/quota/domain/identifiers.py)
test them with ``str.isdigit()``, which also takes full-width digits ('３２０６１２', what a Chinese IME types) and any
other script's digits ('٣٢٠٦١٢'). A release with such a code is taken into the pool: a township that does not exist
gets the lot (its compensation, and the township order of consumption), or a county that looks like a real one gets
a pool of its own. A lot's date must be one that has been: a release dated in the future (a typo such as 2042 for
2024) is pooled and granted at once, though FIFO puts it behind everything, and the county's township order takes
codes no township has (a typo there silently turns "townships first" into plain FIFO).

The guard walks release -> partial reservation -> expiry -> re-reservation over many smallest-unit lots and checks
the pool identity, provenance and the money split to the last fen (the existing tests do not take that path)."""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import pytest

from services.quota.application.pool import county_pool
from services.quota.replay import rebuild
from services.quota.storage import tables as T
from sqlalchemy.orm import Session
from tests.integration.quota.harness import ECOLOGY, credit_code
from tests.integration.quota.test_quota_application import db  # noqa: F401 - the migrated database fixture
from tests.integration.quota.test_review_pool_rules_db import T0, Book
from tests.support.services import ADMIN, running_service

C = "320612"  # Book's county


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("quota", db_url, kafka_bootstrap, background=False) as (rt, client):
        yield rt, client


def _release(client, release_id: str, county: str = C, township: str | None = None, **extra):
    body = dict(release_id=release_id, enterprise_credit_code=credit_code(C, 1),
                township_code=township if township is not None else f"{county}100", county_code=county, asset="COD",
                amount="10", reason="upgrade_savings", basis="free", document_ref="通环收〔2024〕1号",
                released_on="2024-02-01")
    body.update(extra)
    return client.post("/v1/releases", headers=ECOLOGY, json=body)


# -- defects ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("township", [C + "１００", C + "١٠٠"])  # full-width, Arabic-Indic
def test_a_township_code_of_non_ascii_digits_is_refused_not_pooled(service, township):
    rt, client = service
    client.put(f"/v1/counties/{C}/policy", headers=ADMIN, json={})
    r = _release(client, f"REL-TWP-{ord(township[-1])}", township=township)
    stored = client.get(f"/v1/releases/REL-TWP-{ord(township[-1])}", headers=ADMIN)
    lots = client.get(f"/v1/counties/{C}/lots", headers=ADMIN).json()["lots"]
    assert r.status_code == 422 and r.json()["reason"] == "township_code_malformed", r.text
    assert stored.status_code == 404 and lots == [], (stored.text, lots)


@pytest.mark.parametrize("county", ["３２０６１２", "٣٢٠٦١٢"])
def test_a_county_code_of_non_ascii_digits_is_refused_and_makes_no_county(service, county):
    rt, client = service
    r = _release(client, f"REL-CTY-{ord(county[0])}", county=county)
    policy = client.put(f"/v1/counties/{county}/policy", headers=ADMIN, json={})
    pool = client.get(f"/v1/counties/{county}/pool", headers=ADMIN)
    assert r.status_code == 422 and r.json()["reason"] == "county_code_malformed", r.text
    assert policy.status_code == 422 and policy.json()["reason"] == "county_code_malformed", policy.text
    assert pool.status_code == 422, pool.text  # a malformed code, not a county with a pool of its own


def test_a_release_dated_in_the_future_is_refused(service):
    rt, client = service
    client.put(f"/v1/counties/{C}/policy", headers=ADMIN, json={})
    r = _release(client, "REL-FUTURE", released_on="2099-02-01")  # a typo for 2024: quota not freed yet
    assert r.status_code == 422 and r.json()["reason"] == "date_implausible", r.text
    assert client.get("/v1/releases/REL-FUTURE", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("entry", ["32061210", "320613100", "north-township"])  # 8 digits, another county, a name
def test_a_township_order_naming_no_township_of_the_county_is_refused(service, entry):
    rt, client = service
    before = client.put(f"/v1/counties/{C}/policy", headers=ADMIN, json={"consumption_order": "township_order",
                                                                       "township_order": [f"{C}100"]})
    assert before.status_code == 200, before.text
    r = client.put(f"/v1/counties/{C}/policy", headers=ADMIN, json={"consumption_order": "township_order",
                                                                  "township_order": [entry, f"{C}100"]})
    after = client.get(f"/v1/counties/{C}/policy", headers=ADMIN).json()
    assert r.status_code == 422 and r.json()["reason"] == "policy_invalid", r.text
    assert (after["version"], after["township_order"]) == (before.json()["version"], [f"{C}100"])


# -- guard -----------------------------------------------------------------------------------------------------
def test_many_smallest_unit_lots_partial_reservation_expiry_and_re_reservation_trace_every_unit_and_fen(db):
    """Seven lots of 0.0003 t (20 %: 1 unit retired each, ceil) and one of 0.0001 t (retired whole). A 0.0005 t
    reservation expires unconfirmed; the round that notices it grants 0.0013 t to another project, then 0.0001 t:
    the pool ends empty, every allocated unit sits in exactly one lot's consumption, and each line's money (12,345.67
    CNY/t) is split over its lots to the fen, the remainder to the first lot consumed."""
    book = Book(db, retire_share_bp={"COD": 2000}, price_fen_per_unit={"COD": 1_234_567},
                reservation_timeout_seconds=600)
    for i in range(7):
        book.release(f"REL-{i}", "COD", "0.0003", f"2024-01-{10 + i:02d}", serial=10 + i)
    book.release("REL-TINY", "COD", "0.0001", "2024-01-01", serial=30)
    book.book()
    assert book.figures("COD") == (22, 8, 0, 0, 14)

    for p in ("P1", "P2", "P3"):
        book.evaluate(p)
    book.request("Q1", "P1", COD="0.0005")
    assert [d.outcome.value for d in book.round().result.decisions] == ["granted"]
    book.pending("Q1")
    assert book.figures("COD") == (22, 8, 0, 5, 9)

    later = T0 + timedelta(seconds=601)  # past Q1's reservation deadline, never confirmed
    book.request("Q2", "P2", now=later, COD="0.0013")
    run = book.round(now=later)
    assert run.expired_before == ("Q1",)
    assert [(d.request_id, d.outcome.value) for d in run.result.decisions] == [("Q2", "granted")]
    assert book.state("Q1") == ("expired", "deadline_passed")
    assert [r.transfer_id for r in book._rows("void", request_id="Q1")] == ["quota/void/Q1/COD"]
    book.pending("Q2", now=later)
    book.approve("P2", now=later)
    book.request("Q3", "P3", now=later, COD="0.0001")
    book.round(now=later)
    book.pending("Q3", now=later)
    book.approve("P3", now=later)
    book.approve("P1", now=later)  # Q1's confirmation after its expiry allocates nothing
    assert [book.state(q)[0] for q in ("Q1", "Q2", "Q3")] == ["expired", "allocated", "allocated"]
    assert book.figures("COD") == (22, 8, 14, 0, 0)

    lots = {r.lot_id: r for r in book.table(T.lots)}
    used = book.table(T.consumptions)
    taken: dict[str, int] = defaultdict(int)
    for c in used:
        taken[c.lot_id] += c.amount
    for lot_id, r in lots.items():  # no unit of a lot is credited twice, none is lost
        assert r.amount - r.retired - r.remaining == taken[lot_id], lot_id
    assert sorted((c.request_id, c.lot_id, c.amount) for c in used if c.request_id == "Q2") == \
        [("Q2", f"release:REL-{i}", 2 if i < 6 else 1) for i in range(7)]
    assert [(c.lot_id, c.amount) for c in used if c.request_id == "Q3"] == [("release:REL-6", 1)]
    allocs = {a.request_id: a for a in book.table(T.allocations)}
    assert set(allocs) == {"Q2", "Q3"}
    assert allocs["Q2"].amount_due_fen == 1605  # 0.0013 t x 12,345.67 = 16.0494 CNY, half up
    dues = {c.lot_id: c.amount_due_fen for c in used if c.request_id == "Q2"}
    assert sum(dues.values()) == 1605
    # floor(1605 x 2/13) = 246 per two-unit lot, floor(1605/13) = 123; the 6 fen left to REL-0, consumed first
    assert dues == {"release:REL-0": 252, **{f"release:REL-{i}": 246 for i in range(1, 6)}, "release:REL-6": 123}
    with Session(db.engine) as s:
        assert county_pool(s, C).figures["COD"].released == sum(r.amount for r in lots.values())

    report = rebuild(db)
    assert report.equal, "\n".join(map(str, report.differences))
