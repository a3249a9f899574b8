"""Review of the yearly ranking of industrial clusters (集聚区, seed 七: 开展年度全市优秀工业集聚区考评), 1 December:
GET /v1/clusters/{county}/{year}/ranking through the real HTTP API on SQLite and PostgreSQL (relay stopped).

Every expectation is computed by hand in the test from the default Jiangsu/Nantong policy (规上 group, which ranks
clusters: tax/亩 40 over 30 万元, revenue/亩 25 over 600 万元, value added/tce 15 over 3, value added/t of emissions
10 over 200 (group average when missing, full term over 0 t), value added/person 5 over 30, R&D/revenue 5 over 3 %;
each term capped at 1.2 x its weight). BIG (test_evaluation_api) on its own: 16 + 25 + 15 + 12 (15 capped) + 4 + 5
= 77.
"""
from __future__ import annotations

import json
import re

from tests.support.services import ADMIN

from .test_decision_lifecycle import _decide, _execute, api  # noqa: F401  (api: the fixture, clock at 2024-03-02)
from .test_evaluation_api import BIG
from .test_review_reads import _figures, _register

YEAR = 2023


def _ranking(c, county, year: int = YEAR) -> dict:
    r = c.get(f"/v1/clusters/{county.code_}/{year}/ranking", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def _run(c, county, year: int = YEAR) -> str:
    r = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": year})
    assert r.status_code in (200, 201), r.text
    return r.json()["run"]["run_id"]


def _terms(cluster: dict) -> dict[str, dict]:
    return {t["indicator"]: t for t in cluster["score"]["terms"]}


def _by_id(ranking: dict) -> dict[str, dict]:
    return {x["cluster_id"]: x for x in ranking["clusters"]}


def _policy(c, county, year: int = YEAR) -> dict:
    r = c.get(f"/v1/policies/{county.code_}/{year}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["policy"]


def _put_policy(c, county, policy: dict, version: int, year: int = YEAR) -> None:
    r = c.put(f"/v1/policies/{county.code_}/{year}", headers=ADMIN, json={"policy": policy | {"version": version}})
    assert r.status_code in (200, 201), r.text
    assert r.json()["changed"] is True, r.text


def _with_tax(tax_yuan: str) -> dict:
    return BIG | {"tax": tax_yuan}


# -- which enterprises count ---------------------------------------------------------------------------------

def test_only_ranked_enterprises_in_the_park_with_figures_count_and_a_members_missing_land_keeps_its_tax_out(api, county):
    """P-1 holds BIG (1) and 2, which reported no land and no emissions (tax 300 万元, revenue 15,000 万元, value added
    3,000 万元, 500 tce, 50 persons, R&D 300 万元). 3 (P-1) is under two years (T) with ten times BIG's tax; 4 (P-1) has
    no figures; 5 is in a park without a park id; 8 is registered outside any park with P-1 written beside it.
    Hand-computed, sums over sums and only over the members that have both figures:
    tax/亩 = 600 / 50 = 12 (2's tax has no 亩 beside it: not counted) -> 16; revenue/亩 600 -> 25;
    value added/tce = 9,000 / 2,500 = 3.6 -> 15 x 1.2 = 18, exactly its cap; value added/t = 6,000 / 20 = 300 ->
    15 -> capped 12; per person 9,000 / 300 = 30 -> 5; R&D 1,200 / 45,000 = 2.66666667 % -> 4.4444.
    Total 80.4444. A county that counted 2's tax over BIG's land, or the T enterprise, would rank P-1 on money that
    is not the park's."""
    _, c = api
    two = {"tax": "3000000", "revenue": "150000000", "value_added": "30000000", "energy": "500",
           "employees": "50", "rnd": "3000000"}
    _register(c, county, 1, park_id="P-1", in_park=True)
    _register(c, county, 2, park_id="P-1", in_park=True)
    _register(c, county, 3, park_id="P-1", in_park=True, flags=["under_two_years"])
    _register(c, county, 4, park_id="P-1", in_park=True)
    _register(c, county, 5, in_park=True)
    _register(c, county, 8, park_id="P-1", in_park=False)
    _figures(c, county, 1, BIG)
    _figures(c, county, 2, two)
    _figures(c, county, 3, _with_tax("60000000"))
    _figures(c, county, 5, _with_tax("60000000"))
    _figures(c, county, 8, _with_tax("60000000"))

    ranking = _ranking(c, county)
    assert [(x["cluster_id"], x["members"]) for x in ranking["clusters"]] == [
        ("P-1", sorted([county.code(1), county.code(2)]))]
    t = _terms(ranking["clusters"][0])
    assert (t["tax_per_mu"]["value"], t["tax_per_mu"]["capped_term"]) == ("12", "16")
    assert (t["revenue_per_mu"]["value"], t["revenue_per_mu"]["capped_term"]) == ("600", "25")
    assert (t["value_added_per_energy"]["value"], t["value_added_per_energy"]["capped_term"]) == ("3.6", "18")
    assert (t["value_added_per_emission"]["value"], t["value_added_per_emission"]["capped_term"]) == ("300", "12")
    assert (t["labour_productivity"]["value"], t["labour_productivity"]["capped_term"]) == ("30", "5")
    assert (t["rnd_ratio"]["value"], t["rnd_ratio"]["capped_term"]) == ("2.66666667", "4.4444")
    assert ranking["clusters"][0]["score"]["total"] == "80.4444"


def test_a_closure_and_a_relocation_after_the_year_leave_its_ranking_and_its_run_as_they_were(api, county):
    """1 (P-A, BIG) and 6 (P-B, BIG with 450 万元 tax, in an ecological control zone: close) and 7 (outside, C:
    relocate into P-A). 6 closes and 7 moves into P-A with effect 2024-03-01. Re-running 2023 afterwards finds the
    same run (same inputs: 6 operated through 2023, 7 stood outside), so the same ranking: P-A 77 (1 alone),
    P-B 73. A county re-running a year after carrying out its decisions would otherwise see its past ranking
    rewritten."""
    _, c = api
    fig7 = BIG | {"tax": "3000000", "emissions.COD": "40", "emissions.NH3-N": "0", "emissions.SO2": "0",
                  "emissions.NOx": "0"}
    _register(c, county, 1, park_id="P-A", in_park=True)
    _register(c, county, 6, park_id="P-B", in_park=True, flags=["ecological_control_zone"])
    _register(c, county, 7, in_park=False)
    for n, f in ((1, BIG), (6, _with_tax("4500000")), (7, fig7)):
        _figures(c, county, n, f)
    first = _run(c, county)
    before = _ranking(c, county)
    assert [(x["cluster_id"], x["score"]["total"]) for x in before["clusters"]] == [("P-A", "77.0000"),
                                                                                  ("P-B", "73.0000")]
    assert _decide(c, county, 6).json()["decided"] == "close"
    assert _decide(c, county, 7).json()["decided"] == "relocate"
    assert _execute(c, county, 6, effective_on="2024-03-01").status_code == 201
    assert _execute(c, county, 7, effective_on="2024-03-01", to_park_id="P-A").status_code == 201
    assert _run(c, county) == first
    assert _ranking(c, county) == before


# -- aggregation and the policy --------------------------------------------------------------------------------

def test_a_cluster_of_one_enterprise_scores_its_terms_without_its_bonus(api, county):
    """A 规上 high-tech enterprise alone in P-S: its own score is 77 + 3 (high_tech) = 80; the cluster's is the same
    six terms without the bonus (an enterprise flag, not a cluster's): 77. A cluster that took its member's bonus
    (or scored differently from the same figures) would not be comparable with a cluster of many."""
    _, c = api
    _register(c, county, 1, park_id="P-S", in_park=True, scale="规上", flags=["high_tech"])
    _figures(c, county, 1, BIG)
    run = _run(c, county)
    mine = c.get(f"/v1/evaluations/{run}/enterprises/{county.code(1)}", headers=ADMIN).json()
    cluster = _ranking(c, county)["clusters"][0]
    assert mine["score"]["total"] == "80.0000" and cluster["score"]["total"] == "77.0000"
    assert cluster["score"]["terms"] == mine["score"]["terms"]
    assert cluster["score"]["adjustments"] == []
    assert (cluster["rank"], cluster["score_rank"], cluster["group_size"], cluster["class_label"]) == (1, 1, 1, "A")


def test_clusters_are_scored_with_the_cluster_group_and_its_own_cap(api, county):
    """The county ranks clusters by 规下's weights (cluster_group) with that group uncapped: tax/亩 60 over 10, tax per
    万kWh 40 over 0.3. P-Q: BIG plus 1,000,000 kWh (100 万kWh): tax/亩 12 -> 72 (uncapped); tax/万kWh 600/100 = 6 ->
    800 (uncapped). Total 872. A ranking scored by another group's weights, or capped against the policy, is
    not the county's."""
    _, c = api
    _register(c, county, 1, park_id="P-Q", in_park=True, scale="规上")
    _figures(c, county, 1, BIG | {"electricity": "1000000"})
    policy = _policy(c, county)
    policy["cluster_group"] = "规下"
    for g in policy["groups"]:
        if g["name"] == "规下":
            g["cap_factor"] = None
    _put_policy(c, county, policy, 2)
    ranking = _ranking(c, county)
    assert (ranking["group"], ranking["policy_version"]) == ("规下", 2)
    t = _terms(ranking["clusters"][0])
    assert (t["tax_per_mu"]["capped_term"], t["tax_per_electricity"]["value"], t["tax_per_electricity"]["capped_term"]) \
        == ("72", "6", "800")
    assert ranking["clusters"][0]["score"]["total"] == "872.0000"


def test_emission_weights_and_a_zero_emission_member_aggregate_as_the_policy_says(api, county):
    """Uncapped 规上, COD weighted 2. P-E: BIG (COD 10, NH3-N 1, SO2 5, NOx 4: weighted 30 t) and a copy reporting 0 t of
    every pollutant (its zero counts, the indicator scores a zero by its full term rule): value added 12,000 over
    30 t = 400 -> 10 x 400 / 200 = 20. P-F: BIG alone: 6,000 / 30 = 200 -> 10. A mean of the members' terms, or an
    unweighted sum of tonnes, would not be the county's figure."""
    _, c = api
    policy = _policy(c, county)
    policy["emission_weights"]["COD"] = "2"
    for g in policy["groups"]:
        if g["name"] == "规上":
            g["cap_factor"] = None
    _put_policy(c, county, policy, 2)
    zero = BIG | {"emissions.COD": "0", "emissions.NH3-N": "0", "emissions.SO2": "0", "emissions.NOx": "0"}
    for n, park, f in ((1, "P-E", BIG), (2, "P-E", zero), (3, "P-F", BIG)):
        _register(c, county, n, park_id=park, in_park=True)
        _figures(c, county, n, f)
    by = _by_id(_ranking(c, county))
    e, f = _terms(by["P-E"])["value_added_per_emission"], _terms(by["P-F"])["value_added_per_emission"]
    assert (e["value"], e["capped_term"], e["status"]) == ("400", "20", "value")
    assert (f["value"], f["capped_term"]) == ("200", "10")


# -- ties, classes, empty counties -----------------------------------------------------------------------------

def test_tied_clusters_share_a_score_rank_and_the_better_class_and_are_ordered_by_id(api, county):
    """Five clusters (A to rank ceil(1) = 1, B to ceil(3) = 3, C to ceil(4.75) = 5): Q-1 77, Q-2 73, Q-3 and Q-10 69
    (tax 300 万元 on 50 亩: 6 -> 8), Q-5 65. Q-10 sorts before Q-3 (ids compared as text), both score rank 3; Q-3 at
    rank 4 would be C by its place but shares Q-10's B (ties take the better class). A cluster pushed into C by
    the spelling of its id would lose the county's priority treatment."""
    _, c = api
    taxes = {"Q-1": "6000000", "Q-2": "4500000", "Q-3": "3000000", "Q-10": "3000000", "Q-5": "1500000"}
    for n, (park, tax) in enumerate(taxes.items(), start=1):
        _register(c, county, n, park_id=park, in_park=True)
        _figures(c, county, n, _with_tax(tax))
    ranking = _ranking(c, county)
    assert [(x["cluster_id"], x["rank"], x["score_rank"], x["class_label"], x["score"]["total"], x["group_size"])
            for x in ranking["clusters"]] == [
        ("Q-1", 1, 1, "A", "77.0000", 5), ("Q-2", 2, 2, "B", "73.0000", 5), ("Q-10", 3, 3, "B", "69.0000", 5),
        ("Q-3", 4, 3, "B", "69.0000", 5), ("Q-5", 5, 5, "C", "65.0000", 5)]


def test_a_county_with_figures_but_no_cluster_has_an_empty_ranking_and_one_without_figures_a_422(api, county):
    """Enterprises outside every park: the ranking is empty (200, no cluster), before and after the run, and names
    the run. A county-year without any figures: 422 nothing_to_evaluate, not an empty 200 nor a 500."""
    _, c = api
    _register(c, county, 1)
    _figures(c, county, 1, BIG)
    before = _ranking(c, county)
    assert before["clusters"] == [] and before["run_id"] is None
    run = _run(c, county)
    after = _ranking(c, county)
    assert after == {**before, "run_id": run}
    r = c.get(f"/v1/clusters/{county.code_}/2022/ranking", headers=ADMIN)
    assert (r.status_code, r.json()["reason"]) == (422, "nothing_to_evaluate"), r.text


# -- reproducibility -----------------------------------------------------------------------------------------

def test_a_new_policy_version_changes_the_ranking_only_through_a_new_run_and_the_old_stays_readable(api, county):
    """Run 1 under the default (P-A 77, P-B 73). Version 2 uncaps 规上: the value-added-per-emission term becomes 15,
    so P-A 80 and P-B 76. The current ranking stays run 1's until the county runs again; then it is version 2's with
    another hash, and run 1's ranking reads exactly as before. Running version 2 again gives the same run and
    ranking (same hash)."""
    _, c = api
    for n, park, f in ((1, "P-A", BIG), (2, "P-B", _with_tax("4500000"))):
        _register(c, county, n, park_id=park, in_park=True)
        _figures(c, county, n, f)
    first = _run(c, county)
    kept = _ranking(c, county)
    assert [x["score"]["total"] for x in kept["clusters"]] == ["77.0000", "73.0000"] and kept["policy_version"] == 1
    policy = _policy(c, county)
    for g in policy["groups"]:
        if g["name"] == "规上":
            g["cap_factor"] = None
    _put_policy(c, county, policy, 2)
    assert _ranking(c, county) == kept
    second = _run(c, county)
    now = _ranking(c, county)
    assert second != first and now["run_id"] == second and now["policy_version"] == 2
    assert now["content_hash"] != kept["content_hash"] and now["policy_hash"] != kept["policy_hash"]
    assert [x["score"]["total"] for x in now["clusters"]] == ["80.0000", "76.0000"]
    old = c.get(f"/v1/evaluations/{first}/clusters", headers=ADMIN)
    assert old.status_code == 200 and old.json() == kept
    assert _run(c, county) == second and _ranking(c, county) == now


def test_the_ranking_writes_every_figure_as_a_decimal_string(api, county):
    """Values, benchmarks, weights, terms and totals are JSON strings of plain decimals (no float, no exponent):
    a finance system reading 7.77777778 as a binary float, or '1E+1', would not recompute the published terms."""
    _, c = api
    small = BIG | {"land": "90", "tax": "7000000"}
    _register(c, county, 1, park_id="P-1", in_park=True)
    _figures(c, county, 1, small)
    r = c.get(f"/v1/clusters/{county.code_}/{YEAR}/ranking", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = json.loads(r.text, parse_float=lambda s: (_ for _ in ()).throw(AssertionError(f"a float: {s}")))
    plain = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
    cluster = body["clusters"][0]
    assert plain.match(cluster["score"]["total"]) and cluster["score"]["total"].count(".") == 1
    for t in cluster["score"]["terms"]:
        for k in ("value", "benchmark", "weight", "raw_term", "capped_term"):
            assert t[k] is None or (isinstance(t[k], str) and plain.match(t[k])), (k, t[k])
    assert _terms(cluster)["tax_per_mu"]["value"] == "7.77777778"  # 700 万元 / 90 亩


def test_an_enterprise_relocated_into_a_cluster_during_the_year_counts_there_that_year_and_not_the_year_before(
        api, county):
    """2022: 1 (P-A, BIG, 77: A), 6 (P-B, BIG with 450 万元 tax, 73: B), 7 (outside, 64.5: C, relocate). The 2022
    relocation of 7 into P-A takes effect on 2023-06-01. 2023 ranks 7 in P-A: (600 + 300) 万元 over 100 亩 = 9 -> 12;
    revenue 600 -> 25; value added 12,000 / 4,000 tce = 3 -> 15; 12,000 / (20 + 40) t = 200 -> 10; 12,000 / 500
    persons = 24 -> 4; R&D 3 % -> 5: 71, below P-B (73). Re-running 2022 still finds P-A alone at 77 (the same run). A
    county whose cluster never took in the enterprises it received, or took them back into the year before, would
    rank its clusters on the wrong members."""
    _, c = api
    fig7 = BIG | {"tax": "3000000", "emissions.COD": "40", "emissions.NH3-N": "0", "emissions.SO2": "0",
                  "emissions.NOx": "0"}
    _register(c, county, 1, park_id="P-A", in_park=True)
    _register(c, county, 6, park_id="P-B", in_park=True, flags=["ecological_control_zone"])
    _register(c, county, 7, in_park=False)
    for year in (2022, 2023):
        for n, f in ((1, BIG), (6, _with_tax("4500000")), (7, fig7)):
            _figures(c, county, n, f, year=year)
    run_2022 = _run(c, county, 2022)
    ranking_2022 = _ranking(c, county, 2022)
    assert [(x["cluster_id"], x["score"]["total"]) for x in ranking_2022["clusters"]] == [
        ("P-A", "77.0000"), ("P-B", "73.0000")]
    assert _decide(c, county, 7, year=2022).json()["decided"] == "relocate"
    moved = _execute(c, county, 7, year=2022, effective_on="2023-06-01", to_park_id="P-A")
    assert moved.status_code == 201, moved.text

    ranking = _ranking(c, county)
    assert [(x["cluster_id"], x["members"], x["score"]["total"]) for x in ranking["clusters"]] == [
        ("P-B", [county.code(6)], "73.0000"), ("P-A", sorted([county.code(1), county.code(7)]), "71.0000")]
    t = _terms(_by_id(ranking)["P-A"])
    assert (t["tax_per_mu"]["value"], t["value_added_per_emission"]["value"]) == ("9", "200")
    assert _run(c, county, 2022) == run_2022 and _ranking(c, county, 2022) == ranking_2022


def test_a_relative_benchmark_is_last_years_county_average_for_clusters_too(api, county):
    """2022: 1 (P-A, BIG) and 2 (outside, BIG with 300 万元 tax), both 规上: the 规上 tax per 亩 is 900 / 100 = 9. 2023's
    policy takes 2 x that (18) as the tax/亩 benchmark: P-A (BIG) scores 40 x 12 / 18 = 26.6667 there, 87.6667 in
    all, the same read before the 2023 run and kept with it."""
    _, c = api
    _register(c, county, 1, park_id="P-A", in_park=True, scale="规上")
    _register(c, county, 2, scale="规上")
    _figures(c, county, 1, BIG, year=2022)
    _figures(c, county, 2, _with_tax("3000000"), year=2022)
    _run(c, county, 2022)
    _figures(c, county, 1, BIG)
    policy = _policy(c, county)
    for g in policy["groups"]:
        if g["name"] == "规上":
            for term in g["terms"]:
                if term["indicator"] == "tax_per_mu":
                    term["benchmark"] = {"kind": "relative", "factor": "2"}
    _put_policy(c, county, policy, 2)
    before = _ranking(c, county)
    t = _terms(before["clusters"][0])["tax_per_mu"]
    assert (t["benchmark"], t["capped_term"]) == ("18", "26.6667")
    assert before["clusters"][0]["score"]["total"] == "87.6667"
    run = _run(c, county)
    assert _ranking(c, county) == {**before, "run_id": run}


def test_a_correction_taken_back_makes_the_first_run_and_its_ranking_current_again(api, county):
    """P-A (BIG, 77) and P-B (BIG with 450 万元 tax, 73). 2's tax is corrected to 600 万元 (a tie, new run) and then back:
    the county's run is the first one again, and so is the ranking, hash included."""
    _, c = api
    for n, park, f in ((1, "P-A", BIG), (2, "P-B", _with_tax("4500000"))):
        _register(c, county, n, park_id=park, in_park=True)
        _figures(c, county, n, f)
    first = _run(c, county)
    kept = _ranking(c, county)
    for tax in ("6000000", "4500000"):
        r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(2), "year": YEAR,
                                                          "department": "tax", "fields": {"tax": tax}})
        assert r.status_code in (200, 201), r.text
        if tax == "6000000":
            second = _run(c, county)
            tied = _ranking(c, county)
            assert second != first and [x["score"]["total"] for x in tied["clusters"]] == ["77.0000", "77.0000"]
    assert _run(c, county) == first
    assert _ranking(c, county) == kept


# -- the cluster's identity and the documented rules -------------------------------------------------------------

def test_a_park_id_written_with_a_stray_space_does_not_make_a_second_cluster(api, county):
    """1 is registered in P-A; 2, by a department's system over HTTP, in 'P-A ' (a trailing space, as spreadsheets and
    forms leave them: a register file's cell is stripped, an HTTP or Kafka entry is not). The county has one cluster
    P-A of 1 and 2 (BIG and BIG with 450 万元 tax: 1,050 / 100 亩 = 10.5 -> 14, 75 in all), or the entry is refused;
    ranked as two clusters, 'P-A ' would sit beside P-A as a 集聚区 of its own, each scored on half the park, and no
    project could ever be admitted into the second (admission takes park ids of letters, digits, _ . - only)."""
    _, c = api
    _register(c, county, 1, park_id="P-A", in_park=True)
    r = c.post("/v1/enterprises", headers=ADMIN, json={
        "credit_code": county.code(2), "name": "企业2", "township_code": county.township, "industry_code": "C3311",
        "in_park": True, "park_id": "P-A "})
    _figures(c, county, 1, BIG)
    if r.status_code == 422:
        return  # refused: the department sends it again as P-A
    assert r.status_code == 201, r.text
    _figures(c, county, 2, _with_tax("4500000"))
    ranking = _ranking(c, county)
    assert [(x["cluster_id"], x["members"], x["score"]["total"]) for x in ranking["clusters"]] == [
        ("P-A", sorted([county.code(1), county.code(2)]), "75.0000")], [
        (repr(x["cluster_id"]), x["score"]["total"]) for x in ranking["clusters"]]


def test_the_api_documents_how_tied_clusters_are_ordered_and_classed(api, county):
    """The ranking's readers (the county's 工信局 naming its best clusters, a finance system) are told the tie rule
    where they read the API: ClusterOut's rank / score_rank, or the ranking endpoint, say that equal published scores
    share a score_rank and the better class and are ordered by cluster id. Without it, two clusters on 69.0000 at
    ranks 3 and 4, both B though rank 4 is in C's band, read as an error."""
    _, c = api
    doc = c.get("/openapi.json").json()
    cluster = doc["components"]["schemas"]["ClusterOut"]["properties"]
    endpoint = doc["paths"]["/v1/clusters/{county_code}/{year}/ranking"]["get"]
    said = " ".join([cluster["rank"].get("description", ""), cluster["score_rank"].get("description", ""),
                     cluster["class_label"].get("description", ""), endpoint.get("summary", ""),
                     endpoint.get("description", "")]).lower()
    assert "tie" in said or "equal" in said, said


def test_a_relocation_into_a_park_id_with_a_stray_space_does_not_make_a_second_cluster(api, county):
    """2022: 1 (P-A, BIG, A), 6 (P-B, ecological control zone, B), 7 (outside, C: relocate). The relocation of 7 is
    recorded into 'P-A ' (typed with a trailing space) with effect 2023-06-01. 2023's ranking has P-A of 1 and 7 (71,
    as in the relocation test above), or the execution is refused; a cluster 'P-A ' of 7 alone, beside P-A, is a
    集聚区 the county does not have."""
    _, c = api
    fig7 = BIG | {"tax": "3000000", "emissions.COD": "40", "emissions.NH3-N": "0", "emissions.SO2": "0",
                  "emissions.NOx": "0"}
    _register(c, county, 1, park_id="P-A", in_park=True)
    _register(c, county, 6, park_id="P-B", in_park=True, flags=["ecological_control_zone"])
    _register(c, county, 7, in_park=False)
    for year in (2022, 2023):
        for n, f in ((1, BIG), (6, _with_tax("4500000")), (7, fig7)):
            _figures(c, county, n, f, year=year)
    _run(c, county, 2022)
    assert _decide(c, county, 7, year=2022).json()["decided"] == "relocate"
    moved = _execute(c, county, 7, year=2022, effective_on="2023-06-01", to_park_id="P-A ")
    if moved.status_code == 422:
        return
    assert moved.status_code == 201, moved.text
    ranking = _ranking(c, county)
    assert [(x["cluster_id"], x["members"]) for x in ranking["clusters"]] == [
        ("P-B", [county.code(6)]), ("P-A", sorted([county.code(1), county.code(7)]))], [
        (repr(x["cluster_id"]), x["members"]) for x in ranking["clusters"]]
