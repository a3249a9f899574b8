"""Review of the cluster ranking (seed 七: the yearly ranking of 集聚区) and of project admission (seed 二.2, 四), on
SQLite and PostgreSQL, relay stopped (what would be published is read from the outbox).

Clusters: which enterprises count for a year (in a park, figures for the year, not T, where they stood through
it), sums of numerators over sums of denominators, caps, a missing value taking the average over clusters, ties,
exact decimals. Admission: the county-year's thresholds, every failed rule with figure and threshold in
ProjectEvaluated, and a park named so that settlement can name it."""
from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import text

from services.settlement.domain.errors import PartyError
from services.settlement.domain.parties import park
from tests.support.services import ADMIN

from .test_decision_lifecycle import _decide, _execute, api  # noqa: F401  (api: the fixture, clock at 2024-03-02)
from .test_dispositions_api import FIGURES
from .test_evaluation_api import BIG
from .test_review_reads import _figures, _register

NO_EMISSIONS = {k: v for k, v in BIG.items() if not k.startswith("emissions.")}
HALF_BIG = {k: str(Decimal(v) / 2) for k, v in BIG.items()}  # two of these add up to BIG exactly


def _ranking(c, county, year: int = 2023) -> dict:
    r = c.get(f"/v1/clusters/{county.code_}/{year}/ranking", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def _outbox(runtime, event: str) -> list[dict]:
    with runtime.db.sessions() as s:
        rows = s.execute(text("SELECT envelope FROM outbox WHERE event_type = :t ORDER BY position"),
                         {"t": f"countypool.{event}.v1"}).scalars().all()
    return [json.loads(p)["data"] for p in rows]


# -- clusters ------------------------------------------------------------------------------------------------

def test_a_cluster_counts_the_enterprises_in_it_that_operated_through_the_year(api, county):
    """P-A: 1 (A, in the park). P-B: 6 (in an ecological control zone: closed with effect 2024-03-01). 7 outside
    (C: relocated into P-A with effect 2024-03-01). 2 is registered outside any park (in_park false) with a stale
    park_id P-B: the run judges it outside a park, so no cluster counts it. 8 (P-A) has no 2023 figures; 9 (P-A) is a
    utility (T). 2023 stays the same ranking after the closure and the relocation; 2024 counts 7 in P-A and no P-B."""
    runtime, c = api
    places = {1: ("P-A", True), 6: ("P-B", True), 7: (None, False), 2: ("P-B", False), 8: ("P-A", True),
              9: ("P-A", True)}
    for n, (park_id, in_park) in places.items():
        _register(c, county, n, park_id=park_id, in_park=in_park,
                  flags=["ecological_control_zone"] if n == 6 else ["utility"] if n == 9 else [])
    for n, fields in (FIGURES | {2: BIG | {"tax": "5000000"}, 9: BIG | {"tax": "60000000"}}).items():
        _figures(c, county, n, fields)
    assert c.post("/v1/evaluations", headers=ADMIN, json=county.run).status_code == 201

    before = _ranking(c, county)
    assert [(x["cluster_id"], x["members"]) for x in before["clusters"]] == [
        ("P-A", [county.code(1)]), ("P-B", [county.code(6)])], "2 stands outside every park; 8 and 9 do not count"
    assert [x["score"]["total"] for x in before["clusters"]] == ["77.0000", "73.0000"]

    assert _decide(c, county, 6).json()["decided"] == "close"
    assert _decide(c, county, 7).json()["decided"] == "relocate"
    assert _execute(c, county, 6, effective_on="2024-03-01").status_code == 201
    assert _execute(c, county, 7, effective_on="2024-03-01", to_park_id="P-A").status_code == 201
    assert _ranking(c, county) == before, "2023 is ranked where its enterprises stood through it"

    for n, fields in FIGURES.items():  # 6 reported for 2024 too, though it closed on 1 March
        _figures(c, county, n, fields, year=2024)
    after = _ranking(c, county, 2024)
    assert [(x["cluster_id"], x["members"]) for x in after["clusters"]] == [
        ("P-A", sorted([county.code(1), county.code(7)]))]
    # (6,000,000 + 3,000,000 元) over 100 亩: 90,000 元, or 9 万元, per 亩
    assert after["clusters"][0]["score"]["terms"][0]["value"] == "9"


def test_clusters_sum_their_members_figures_tie_and_take_the_average_over_clusters_for_a_missing_value(api, county):
    """P-Y: one BIG enterprise. P-Z: two halves of it, the same sums: the same score, a tie (both A, one score rank;
    display rank by id). P-X: BIG without emissions and a smaller one (40 亩, 1,000,000 元 tax, the rest 0.8 BIG,
    no emissions): tax per 亩 700 万元 / 90 亩 = 7.77777778 (a mean of ratios would say 7.25), term 40 x that / 30;
    its emissions term is missing and takes the average over clusters of the capped terms (12, 12): 12."""
    runtime, c = api
    small = {k: str(Decimal(v) * Decimal("0.8")) for k, v in NO_EMISSIONS.items()} | {"land": "40", "tax": "1000000"}
    members = {1: ("P-Y", BIG), 2: ("P-Z", HALF_BIG), 3: ("P-Z", HALF_BIG), 4: ("P-X", NO_EMISSIONS), 5: ("P-X", small)}
    for n, (park_id, fields) in members.items():
        _register(c, county, n, park_id=park_id, in_park=True)
        _figures(c, county, n, fields)

    ranking = _ranking(c, county)
    by_id = {x["cluster_id"]: x for x in ranking["clusters"]}
    assert [(x["cluster_id"], x["rank"], x["score_rank"], x["class_label"], x["score"]["total"])
            for x in ranking["clusters"]] == [
        ("P-Y", 1, 1, "A", "77.0000"), ("P-Z", 2, 1, "A", "77.0000"), ("P-X", 3, 3, "C", "71.3704")]
    assert by_id["P-Z"]["score"] == by_id["P-Y"]["score"] | {"subject": "P-Z"}
    emission = next(t for t in by_id["P-Y"]["score"]["terms"] if t["indicator"] == "value_added_per_emission")
    assert (emission["value"], emission["raw_term"], emission["capped_term"]) == ("300", "15", "12")  # capped 1.2 x 10

    x = {t["indicator"]: t for t in by_id["P-X"]["score"]["terms"]}
    assert (x["tax_per_mu"]["value"], x["tax_per_mu"]["capped_term"]) == ("7.77777778", "10.3704")
    assert (x["value_added_per_emission"]["status"], x["value_added_per_emission"]["value"],
            x["value_added_per_emission"]["capped_term"]) == ("missing_group_average", None, "12")
    assert sum(Decimal(t["capped_term"]) for t in x.values()) == Decimal("71.3704")
    assert _ranking(c, county) == ranking, "the same inputs: the same ranking and content hash"


# -- admission -----------------------------------------------------------------------------------------------

def _project(county, pid: str, **kw) -> dict:
    return {"project_id": pid, "applicant_credit_code": county.code(1), "county_code": county.code_, "year": 2023,
            "park_id": "P-A", "land": "10", "investment": "25000000.00", "expected_yearly_tax": "1500000.00",
            "industry_code": "C3311", **kw}


def test_a_project_is_checked_under_its_county_years_thresholds_and_every_failure_is_published(api, county):
    """2024's policy of the county raises the thresholds (300 万元 and 20 万元 per 亩); a 2023 project at exactly the
    default ones is admitted, the same project for 2024 fails both, with figures and thresholds in the answer and in
    ProjectEvaluated as decimal strings."""
    runtime, c = api
    policy = c.get(f"/v1/policies/{county.code_}/2024", headers=ADMIN).json()["policy"]
    policy["admission"] |= {"investment_fen_per_mu": 300_000_000, "tax_fen_per_mu": 20_000_000}
    put = c.put(f"/v1/policies/{county.code_}/2024", headers=ADMIN, json={"policy": policy | {"version": 2}})
    assert put.status_code == 200, put.text

    ok = c.post("/v1/projects", headers=ADMIN, json=_project(county, f"PRJ-{county.code_}-23"))
    assert (ok.status_code, ok.json()["admitted"], ok.json()["failures"]) == (201, True, [])
    refused = c.post("/v1/projects", headers=ADMIN, json=_project(county, f"PRJ-{county.code_}-24", year=2024))
    assert refused.status_code == 201, refused.text
    want = [("investment_per_mu_below_threshold", "2500000.00", "3000000.00", "元/亩"),
            ("tax_per_mu_below_threshold", "150000.00", "200000.00", "元/亩/年")]
    out = refused.json()
    assert (out["admitted"], out["policy_version"]) == (False, 2)
    assert [(f["code"], f["figure"], f["threshold"], f["unit"]) for f in out["failures"]] == want

    published = {e["project_id"]: e for e in _outbox(runtime, "ProjectEvaluated")}
    assert (published[f"PRJ-{county.code_}-23"]["admitted"], published[f"PRJ-{county.code_}-23"]["year"]) == (True, 2023)
    ev = published[f"PRJ-{county.code_}-24"]
    assert (ev["admitted"], ev["year"], ev["policy_version"], ev["park_id"]) == (False, 2024, 2, "P-A")
    assert [(f["code"], f["figure"], f["threshold"], f["unit"]) for f in ev["failures"]] == want


def test_a_project_s_park_is_one_settlement_can_name(api, county):
    """The park of an admitted project travels in ProjectEvaluated and QuotaAllocated to settlement, which names it
    park:<park_id> with a code of letters, digits, _ . and - only. A project admitted into '高新区', 'P 01' or ' '
    (a blank park still counted as 'in a park') had every allocation dead-lettered there: refused here instead."""
    runtime, c = api
    for i, bad in enumerate(["高新区", "P 01", " ", "P/01"]):
        with_park = c.post("/v1/projects", headers=ADMIN, json=_project(county, f"PRJ-bad-{i}", park_id=bad))
        # the body's schema states the park code's pattern (it was the admission's invalid_project before)
        assert (with_park.status_code, with_park.json().get("reason")) == (422, "invalid_request"), (bad, with_park.text)
        try:
            park(bad)
            raise AssertionError(f"settlement names a park {bad!r}: the refusal above is needless")
        except PartyError:
            pass
    assert _outbox(runtime, "ProjectEvaluated") == []
    good = c.post("/v1/projects", headers=ADMIN, json=_project(county, "PRJ-good", park_id="320612-P01.a_b"))
    assert (good.status_code, good.json()["admitted"]) == (201, True), good.text
    assert park("320612-P01.a_b") == "park:320612-P01.a_b"
    assert [e["park_id"] for e in _outbox(runtime, "ProjectEvaluated")] == ["320612-P01.a_b"]
