"""Writers of one enterprise at the same moment. Departments sending their parts of one enterprise-year (HTTP requests served side by side, on
PostgreSQL and SQLite): every department's figures end in the merged record, none lost to another's write. On
PostgreSQL each merged into the record as it was before the others (the last write kept only its own and the
earlier figures), and two first parts of one enterprise-year raced to insert it (409 concurrent_change)."""
from __future__ import annotations

import threading

from tests.support.services import ADMIN, auth

INDUSTRY = auth("dev-industry-token")  # assessment:write
DEPARTMENTS = {"tax": "tax", "land": "land", "industry": "revenue", "energy": "energy", "stats": "employees",
               "power": "electricity"}


def _together(calls) -> list:
    start, out = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i, call):
        start.wait()
        out[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_parts_sent_at_once_all_reach_the_merged_record(api, county):
    _, c = api
    codes = [county.code(n) for n in range(1, 5)]
    for code in codes:
        r = c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": code, "name": "企业", "industry_code": "C3311",
                                                           "township_code": county.township})
        assert r.status_code == 201, r.text
    # the first two enterprises have a record already (an update races), the others none (an insert races)
    for code in codes[:2]:
        r = c.post("/v1/indicators", headers=INDUSTRY, json={"credit_code": code, "year": 2023, "department": "rnd",
                                                              "fields": {"rnd": "1"}})
        assert r.status_code == 201, r.text
    for round_ in range(3):
        calls = [lambda code=code, d=d, f=f: c.post("/v1/indicators", headers=INDUSTRY, json={
            "credit_code": code, "year": 2023, "department": d, "fields": {f: str(10 + round_)}})
            for code in codes for d, f in DEPARTMENTS.items()]
        answers = _together(calls)
        assert all(r is not None and r.status_code in (200, 201) for r in answers), [
            (r.status_code, r.text) for r in answers if r is not None and r.status_code not in (200, 201)]
        for code in codes:
            got = c.get(f"/v1/enterprises/{code}/indicators/2023", headers=ADMIN).json()
            expected = {f: d for d, f in DEPARTMENTS.items()} | ({"rnd": "rnd"} if code in codes[:2] else {})
            assert got["sources"] == expected, (round_, code, got)
            assert all(got["figures"][f].split(".")[0] == str(10 + round_) for f in DEPARTMENTS.values()), got


def test_register_updates_at_once_each_keep_the_other_s_change(api, county):
    """A rename (no flags key: the flags are kept) beside a hazard flag (no park key): on PostgreSQL each wrote the
    row as it was before the other, so the hazard could vanish, and one revision with it."""
    _, c = api
    codes = [county.code(n) for n in range(1, 9)]

    def entry(code, **kw):
        return {"credit_code": code, "name": "企业", "industry_code": "C3311", "township_code": county.township, **kw}

    for code in codes:
        assert c.post("/v1/enterprises", headers=ADMIN, json=entry(code)).status_code == 201
    calls = [call for code in codes for call in (
        lambda code=code: c.post("/v1/enterprises", headers=ADMIN, json=entry(code, name="改名企业")),
        lambda code=code: c.post("/v1/enterprises", headers=ADMIN, json=entry(code, flags=["safety_hazard"])))]
    answers = _together(calls)
    assert all(r is not None and r.status_code == 200 for r in answers), [r.text for r in answers if r is not None]
    for code in codes:
        got = c.get(f"/v1/enterprises/{code}", headers=ADMIN).json()
        assert "safety_hazard" in got["flags"] and got["revision"] >= 2, got
        # the hazard first, then the rename keeping it: both changed the row; the rename first: the flag's write
        # sends the old name back, a change too. Either way two updates, two revisions.
        assert got["revision"] == 3, got
