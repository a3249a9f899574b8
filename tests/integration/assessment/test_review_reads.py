"""Review of the assessment read API as an enterprise, the county office and a dashboard use it: a result and
its breakdown, a run's listing, old runs, policy versions, decisions, tasks, projects and clusters. On SQLite and
PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal


from tests.support.services import ADMIN

from .test_evaluation_api import BIG, _setup


def _register(c, county, n: int, **extra) -> None:
    body = {"credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township,
            "industry_code": "C3311", **extra}
    r = c.post("/v1/enterprises", headers=ADMIN, json=body)
    assert r.status_code == 201, r.text


def _figures(c, county, n: int, fields: dict, year: int = 2023) -> None:
    r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": year,
                                                      "department": "tax", "fields": fields})
    assert r.status_code == 201, r.text


def _run(c, county) -> str:
    r = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert r.status_code in (200, 201), r.text
    return r.json()["run"]["run_id"]


def _all_rows(c, run_id: str, limit: int = 1000, **params) -> list[dict]:
    out, after = [], ""
    while True:
        page = c.get(f"/v1/evaluations/{run_id}/enterprises", headers=ADMIN,
                     params={"after": after, "limit": limit, **params})
        assert page.status_code == 200, page.text
        out += page.json()["items"]
        after = page.json()["next_after"]
        if after is None:
            return out


# -- a result and its breakdown ------------------------------------------------------------------------------

def test_breakdown_terms_and_adjustments_add_up_to_the_score(county, service):
    """A 规下 enterprise on 9 亩 paying 10,000 元 with 2,000,000 kWh: tax per 亩 1/9 万元 (60 x (1/9) / 10 = 2/3)
    and tax per 万kWh 0.005 万元 (40 x 0.005 / 0.3 = 2/3). Each term is published as 0.6667, the score as 1.3333
    (+3 high_tech): an enterprise adding up its breakdown gets 4.3334, not the score it was ranked by."""
    _, c, _ = service
    _register(c, county, 1, scale="规下", flags=["high_tech"])
    _figures(c, county, 1, {"land": "9", "tax": "10000", "electricity": "2000000", "revenue": "500000"})
    rid = _run(c, county)
    [row] = _all_rows(c, rid)
    b = c.get(row["breakdown_ref"], headers=ADMIN).json()
    terms = [Decimal(t["capped_term"]) for t in b["score"]["terms"]]
    points = [Decimal(a["points"]) for a in b["score"]["adjustments"]]
    assert terms == [Decimal("0.6667"), Decimal("0.6667")] and points == [Decimal(3)]
    assert sum(terms) + sum(points) == Decimal(b["score"]["total"]) == Decimal(row["score"]), (
        f"terms {terms} + points {points} = {sum(terms) + sum(points)}, score {row['score']}")


def test_each_term_recomputes_from_the_value_weight_and_benchmark_shown(county, service):
    """2,000,007 元 of tax on 50 亩 is 4.000014 万元/亩, shown as value '4'; the term was computed from the unshown
    digits: 40 x 4 / 30 = 5.3333, but the breakdown says 5.3334. An enterprise cannot check its own term."""
    _, c, _ = service
    _register(c, county, 1)
    _figures(c, county, 1, BIG | {"tax": "2000007"})
    rid = _run(c, county)
    b = c.get(f"/v1/evaluations/{rid}/enterprises/{county.code(1)}", headers=ADMIN).json()
    for t in b["score"]["terms"]:
        if t["status"] != "value":
            continue
        again = (Decimal(t["weight"]) * Decimal(t["value"]) / Decimal(t["benchmark"])).quantize(Decimal("0.0001"),
                                                                                              "ROUND_HALF_UP")
        assert again == Decimal(t["raw_term"]), (t["indicator"], t["value"], t["raw_term"], again)


def test_breakdown_total_is_written_as_the_listed_score(county, service):
    """The same figure in the same text wherever it is shown: the listing (and EnterpriseAssessed) say '77.0000'."""
    _, c, _ = service
    _setup(c, county)
    rid = _run(c, county)
    rows = {r["credit_code"]: r for r in _all_rows(c, rid)}
    for n in (1, 2, 3):
        row = rows[county.code(n)]
        b = c.get(row["breakdown_ref"], headers=ADMIN).json()
        assert b["score"]["total"] == row["score"], (n, b["score"]["total"], row["score"])


def test_old_run_breakdown_shows_the_weights_and_benchmarks_of_its_own_policy_version(county, service):
    _, c, _ = service
    _setup(c, county)
    first = _run(c, county)
    v1 = c.get(f"/v1/policies/{county.code_}/2023", headers=ADMIN).json()["policy"]
    v2 = dict(v1, version=2)
    v2["groups"] = [dict(g) for g in v1["groups"]]
    above = next(i for i, g in enumerate(v2["groups"]) if g["name"] == "规上")
    v2["groups"][above]["terms"] = [dict(t, weight="45", benchmark={"kind": "fixed", "value": "40"})
                                    if t["indicator"] == "tax_per_mu" else
                                    dict(t, weight="20") if t["indicator"] == "revenue_per_mu" else t
                                    for t in v1["groups"][above]["terms"]]
    assert c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": v2}).status_code == 200
    second = _run(c, county)
    assert second != first

    for rid, version in ((first, 1), (second, 2)):
        policy = c.get(f"/v1/policies/{county.code_}/2023/versions/{version}", headers=ADMIN).json()["policy"]
        group = next(g for g in policy["groups"] if g["name"] == "规上")
        want = {t["indicator"]: (Decimal(t["weight"]), Decimal(t["benchmark"]["value"])) for t in group["terms"]}
        b = c.get(f"/v1/evaluations/{rid}/enterprises/{county.code(1)}", headers=ADMIN).json()
        assert b["policy_version"] == version
        shown = {t["indicator"]: (Decimal(t["weight"]), Decimal(t["benchmark"])) for t in b["score"]["terms"]}
        assert shown == want, (rid, version)
        run = c.get(f"/v1/evaluations/{rid}", headers=ADMIN).json()
        assert {k: Decimal(v) for k, v in run["benchmarks"]["规上"].items()} == {k: v[1] for k, v in want.items()}


def test_a_run_reads_the_same_after_new_runs_renames_and_decisions(county, service):
    """Two reads of one run, with a new policy, corrected figures, a renamed enterprise and a carried-out closure
    in between, give the same listing and the same breakdowns (only 'current' and 'last_requested_at' move)."""
    _, c, _ = service
    _setup(c, county)
    rid = _run(c, county)

    def snapshot():
        rows = _all_rows(c, rid, limit=2)
        return rows, [c.get(r["breakdown_ref"], headers=ADMIN).json() for r in rows]

    before = snapshot()
    _figures(c, county, 3, {"tax": "3600000"})
    c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": county.code(1), "name": "改名企业",
                                                    "township_code": county.township, "industry_code": "C3311",
                                                    "park_id": "P-A", "in_park": True})
    assert _run(c, county) != rid
    assert before == snapshot()
    run = c.get(f"/v1/evaluations/{rid}", headers=ADMIN).json()
    assert run["current"] is False and run["enterprise_count"] == 4


# -- listings ------------------------------------------------------------------------------------------------

def test_listing_pages_without_gaps_ties_by_credit_code_and_t_shown_as_such(county, service):
    """Seven 规上 enterprises: 1..4 identical (a four-way tie), 5 and 6 weaker, 7 a utility (class T). Paged by 2
    (and by class), every enterprise appears once; the tie takes consecutive display ranks in credit-code order,
    one score rank and one class."""
    _, c, _ = service
    for n in range(1, 8):
        _register(c, county, n, **({"flags": ["utility"]} if n == 7 else {}))
    for n in range(1, 8):
        _figures(c, county, n, BIG if n <= 4 or n == 7 else BIG | {"tax": str(3000000 - n * 100000)})
    rid = _run(c, county)
    whole = _all_rows(c, rid)
    paged = _all_rows(c, rid, limit=2)
    assert paged == whole and [r["credit_code"] for r in paged] == sorted(county.code(n) for n in range(1, 8))

    by_code = {r["credit_code"]: r for r in whole}
    tied = sorted(county.code(n) for n in range(1, 5))
    assert [by_code[code]["rank"] for code in tied] == [1, 2, 3, 4]
    assert len({by_code[code]["score"] for code in tied}) == 1
    assert len({by_code[code]["class_label"] for code in tied}) == 1
    for code in tied:
        b = c.get(by_code[code]["breakdown_ref"], headers=ADMIN).json()
        assert (b["score_rank"], b["group_size"]) == (1, 6)
    t = by_code[county.code(7)]
    assert (t["class_label"], t["score"], t["rank"]) == ("T", None, None)
    tb = c.get(t["breakdown_ref"], headers=ADMIN).json()
    assert (tb["excluded_by"], tb["score"], tb["rank"], tb["score_rank"]) == ("utility", None, None, None)

    for label in {r["class_label"] for r in whole}:
        of_class = _all_rows(c, rid, limit=1, class_label=label)
        assert of_class == [r for r in whole if r["class_label"] == label]


def test_unknown_run_and_enterprise_are_404_with_a_reason(county, service):
    _, c, _ = service
    _setup(c, county)
    rid = _run(c, county)
    for path, reason in ((f"/v1/evaluations/{county.code_}-2023-0000000000000000", "run_not_found"),
                         (f"/v1/evaluations/{county.code_}-2023-0000000000000000/enterprises", "run_not_found"),
                         (f"/v1/evaluations/{rid}/enterprises/{county.code(5)}", "result_not_found"),  # no figures
                         (f"/v1/evaluations/{rid}/enterprises/{county.code(99)}", "result_not_found"),
                         (f"/v1/policies/{county.code_}/2023/versions/7", "policy_version_not_found")):
        r = c.get(path, headers=ADMIN)
        assert (r.status_code, r.json().get("reason")) == (404, reason), (path, r.text)


# -- decisions and tasks -------------------------------------------------------------------------------------

def test_decisions_of_an_enterprise_not_in_the_register_are_a_404(county, service):
    """POST /v1/tasks and /v1/dispositions answer 404 enterprise_not_found for a code the register does not know;
    reading its decisions answered 200 with nothing standing, as if it were a known enterprise nobody decided on."""
    _, c, _ = service
    _setup(c, county)
    _run(c, county)
    known = c.get(f"/v1/dispositions/{county.code(1)}/2023", headers=ADMIN)
    assert (known.status_code, known.json()) == (200, {"standing": None, "history": []})
    unknown = c.get(f"/v1/dispositions/{county.code(99)}/2023", headers=ADMIN)
    assert (unknown.status_code, unknown.json().get("reason")) == (404, "enterprise_not_found"), unknown.text


def test_deciding_on_a_registered_enterprise_the_run_left_out_is_not_assessed(county, service):
    """Enterprise 5 is registered but had no figures for 2023, so the run has no result for it. Deciding on it is
    documented as 409 not_assessed; it answered 404 result_not_found, as if the enterprise did not exist."""
    _, c, _ = service
    _setup(c, county)
    _run(c, county)
    r = c.post("/v1/dispositions", headers=ADMIN, json={"credit_code": county.code(5), "year": 2023,
                                                         "decided_by": "县政府常务会议"})
    assert (r.status_code, r.json().get("reason")) == (409, "not_assessed"), r.text


def test_overdue_flag_on_every_task_read_follows_the_china_day(county, service, monkeypatch):
    """A task due 31 January: at 23:59 in China (15:59 UTC) it is on time wherever it is read; at 00:00 on
    1 February in China (still 31 January, 16:00, in UTC) it is overdue wherever it is read."""
    import services.assessment.api.routes_dispositions as routes

    _, c, _ = service
    _setup(c, county)
    tid = f"T-{county.code_}-midnight"
    assert c.post("/v1/tasks", headers=ADMIN, json={"task_id": tid, "credit_code": county.code(1),
                                                     "disposition": "upgrade", "deadline": "2024-01-31"}).status_code == 201

    def reads():
        one = c.get(f"/v1/tasks/{tid}", headers=ADMIN).json()["overdue"]
        listed = [t["overdue"] for t in c.get("/v1/tasks", headers=ADMIN,
                                              params={"county_code": county.code_, "status": "open"}).json()["items"]]
        overdue = [t["id"] for t in c.get("/v1/tasks/overdue", headers=ADMIN,
                                          params={"county_code": county.code_}).json()["items"]]
        return one, listed, overdue

    monkeypatch.setattr(routes, "now", lambda: datetime(2024, 1, 31, 15, 59, 59, tzinfo=timezone.utc))
    assert reads() == (False, [False], [])
    monkeypatch.setattr(routes, "now", lambda: datetime(2024, 1, 31, 16, 0, tzinfo=timezone.utc))
    assert reads() == (True, [True], [tid])


# -- clusters ------------------------------------------------------------------------------------------------

def test_cluster_ranking_terms_add_up_and_show_the_policy_used(county, service):
    _, c, _ = service
    _setup(c, county)
    _run(c, county)
    ranking = c.get(f"/v1/clusters/{county.code_}/2023/ranking", headers=ADMIN).json()
    policy = c.get(f"/v1/policies/{county.code_}/2023/versions/{ranking['policy_version']}", headers=ADMIN).json()
    assert policy["policy_hash"] == ranking["policy_hash"]
    group = next(g for g in policy["policy"]["groups"] if g["name"] == ranking["group"])
    want = {t["indicator"]: (Decimal(t["weight"]), Decimal(t["benchmark"]["value"])) for t in group["terms"]}
    for cl in ranking["clusters"]:
        s = cl["score"]
        assert {t["indicator"]: (Decimal(t["weight"]), Decimal(t["benchmark"])) for t in s["terms"]} == want
        assert sum(Decimal(t["capped_term"]) for t in s["terms"]) == Decimal(s["total"])
    assert c.get(f"/v1/clusters/{county.code_}/2023/ranking", headers=ADMIN).json() == ranking


def test_cluster_ranking_of_a_year_without_figures_is_not_an_empty_ranking(county, service):
    """POST /v1/evaluations answers 422 nothing_to_evaluate for a county-year without figures; the cluster ranking
    of that county-year answered 200 with no clusters (a dashboard shows 'no parks' rather than 'no data')."""
    _, c, _ = service
    _setup(c, county)
    r = c.get(f"/v1/clusters/{county.code_}/2019/ranking", headers=ADMIN)
    assert r.status_code in (404, 422), r.text
    assert r.json().get("reason")


# -- projects ------------------------------------------------------------------------------------------------

def test_project_failures_show_the_industry_override_thresholds_as_decimal_strings(county, service):
    """An industry override (C26: 300 万元 and 20 万元 per 亩): a project on 3 亩 with 7,000,000 元 and 500,000 元 a
    year fails both, each with its figure floored to the fen and the override's threshold, never a float."""
    _, c, _ = service
    policy = c.get(f"/v1/policies/{county.code_}/2023", headers=ADMIN).json()["policy"]
    policy["admission"]["industry_overrides"] = {"C26": {"investment_fen_per_mu": 300_000_000,
                                                         "tax_fen_per_mu": 20_000_000}}
    assert c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN,
                 json={"policy": policy | {"version": 2}}).status_code == 200
    body = {"project_id": f"PRJ-{county.code_}-ovr", "applicant_credit_code": county.code(1),
            "county_code": county.code_, "year": 2023, "park_id": "P-A", "land": "3", "investment": "7000000",
            "expected_yearly_tax": "500000", "industry_code": "C2614"}
    r = c.post("/v1/projects", headers=ADMIN, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["admitted"], out["override_prefix"], out["policy_version"]) == (False, "C26", 2)
    assert [(f["code"], f["figure"], f["threshold"], f["unit"]) for f in out["failures"]] == [
        ("investment_per_mu_below_threshold", "2333333.33", "3000000.00", "元/亩"),
        ("tax_per_mu_below_threshold", "166666.66", "200000.00", "元/亩/年")]
    assert (out["investment_per_mu"], out["tax_per_mu"], out["investment_threshold_per_mu"],
            out["tax_threshold_per_mu"]) == ("2333333.33", "166666.66", "3000000.00", "200000.00")
    assert c.get(f"/v1/projects/{body['project_id']}", headers=ADMIN).json() == out


# -- relative benchmarks -------------------------------------------------------------------------------------

def test_relative_benchmark_shown_is_the_one_the_run_used_and_stays_with_the_run(county, service):
    """2023 takes tax per 亩 against 2 x 2022's average. A run shows the benchmark it scored with; after 2022 is
    corrected and 2023 run again, the old 2023 run still shows its own."""
    _, c, _ = service
    for n in (1, 2):
        _register(c, county, n)
        _figures(c, county, n, BIG | {"tax": str(n * 3000000)}, year=2022)
        _figures(c, county, n, BIG, year=2023)
    assert c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2022}).status_code == 201
    policy = c.get(f"/v1/policies/{county.code_}/2023", headers=ADMIN).json()["policy"]
    above = next(g for g in policy["groups"] if g["name"] == "规上")
    above["terms"][[t["indicator"] for t in above["terms"]].index("tax_per_mu")]["benchmark"] = {
        "kind": "relative", "factor": "2"}
    assert c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}}).status_code == 200
    first = _run(c, county)
    b = c.get(f"/v1/evaluations/{first}/enterprises/{county.code(1)}", headers=ADMIN).json()
    tax = next(t for t in b["score"]["terms"] if t["indicator"] == "tax_per_mu")
    assert Decimal(tax["benchmark"]) == Decimal("18")  # 2 x (9,000,000 元 / 100 亩 = 9 万元/亩)
    assert Decimal(c.get(f"/v1/evaluations/{first}", headers=ADMIN).json()["benchmarks"]["规上"]["tax_per_mu"]) == 18

    _figures(c, county, 2, {"tax": "9000000"}, year=2022)
    assert c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2022}).status_code == 201
    second = _run(c, county)
    assert second != first
    b2 = c.get(f"/v1/evaluations/{second}/enterprises/{county.code(1)}", headers=ADMIN).json()
    assert Decimal(next(t for t in b2["score"]["terms"] if t["indicator"] == "tax_per_mu")["benchmark"]) == 24
    assert c.get(f"/v1/evaluations/{first}/enterprises/{county.code(1)}", headers=ADMIN).json() == b
