"""Review: the assessment service's answers are "explainable to the enterprise concerned and reproducible years
later" (domain.md sections 1 and 2; README, "The assessment service").

A seeded random walk drives ONE running assessment service (PostgreSQL, real Kafka) through its public HTTP API:
enterprises registered, indicators from several departments (each its own part), corrections, the county's part,
policy versions (weights, fixed and relative benchmarks, caps, missing handling, bonus/penalty, rank-share and
threshold class rules, T exclusions, cluster group, admission overrides), evaluations, dispositions, tasks and
project admissions. After each step an independent model (Python's decimal module, from the figures, register and
policy the API itself reports) recomputes every term, score, rank, class, recommendation, group average, benchmark
and cluster ranking; refused calls are checked against full snapshots taken before and after; repeated calls with
the same id must be idempotent; old runs must stay byte-identical.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest

from services.assessment.domain.credit_code import make_credit_code
from tests.support.services import ADMIN, running_service

pytestmark = [pytest.mark.kafka]

SEED = int(os.environ.get("REVIEW_WALK_SEED", "20261202"))
COUNTY = "320684"
TOWNSHIP = COUNTY + "101"
Y0, Y1 = 2022, 2023
Q4, Q8 = Decimal("0.0001"), Decimal("0.00000001")
STRENGTH = {"none": 0, "upgrade": 1, "relocate": 2, "close": 3}
MEASURED = ("value", "zero_denominator_full_term", "zero_denominator_negative")
# field -> department whose part carries it
OWNER = {"land": "natural_resources", "tax": "tax", "revenue": "statistics", "value_added": "statistics",
         "employees": "statistics", "rnd": "statistics", "energy": "development_reform",
         "electricity": "development_reform"}
SCALE = {"land": 4, "tax": 2, "revenue": 2, "value_added": 2, "rnd": 2, "energy": 3, "electricity": 0, "employees": 0}
POLLUTANTS = ("COD", "NH3-N", "SO2", "NOx", "VOCs")


def D(x) -> Decimal:
    return Decimal(str(x))


def q4(x: Decimal) -> Decimal:
    with localcontext() as c:
        c.prec = 90
        return x.quantize(Q4, rounding=ROUND_HALF_UP)


def q8(x: Decimal) -> Decimal:
    with localcontext() as c:
        c.prec = 90
        return x.quantize(Q8, rounding=ROUND_HALF_UP)


def div(a: Decimal, b: Decimal) -> Decimal:
    with localcontext() as c:
        c.prec = 90
        return a / b


def mul(a: Decimal, b: Decimal) -> Decimal:
    with localcontext() as c:
        c.prec = 90
        return a * b


def code(n: int) -> str:
    return make_credit_code(f"91{COUNTY}{n:09d}")


# --------------------------------------------------------------------------------------------------------------------
# the independent model
# --------------------------------------------------------------------------------------------------------------------

def amount(figs: dict[str, str], name: str, policy: dict) -> Decimal | None:
    """A ratio field in the unit indicators are quoted in (亩, 万元, tce, 万kWh, t weighted, persons)."""
    if name == "emissions":
        counted = [(p, D(w)) for p, w in policy["emission_weights"].items() if f"emissions.{p}" in figs]
        if not counted:
            return None
        return sum((mul(w, D(figs[f"emissions.{p}"])) for p, w in counted), Decimal(0))
    v = figs.get(name)
    if v is None:
        return None
    v = D(v)
    if name in ("tax", "revenue", "value_added", "rnd", "electricity"):
        return div(v, Decimal(10000))  # 元 -> 万元, kWh -> 万kWh
    return v


def indicator_defs(policy: dict) -> dict[str, dict]:
    return {i["code"]: i for i in policy["indicators"]}


def group_terms(policy: dict, name: str) -> dict:
    return next(g for g in policy["groups"] if g["name"] == name)


def group_of(ent: dict, figs: dict, policy: dict) -> str:
    if ent["scale"] is not None:
        return ent["scale"]
    rev = figs.get("revenue")
    if rev is not None and D(rev) * 100 >= policy["group_rule"]["revenue_threshold_fen"]:
        return "规上"
    return "规下"


def ratio_inputs(figs: dict | None, policy: dict) -> dict[str, tuple]:
    out = {}
    for c, d in indicator_defs(policy).items():
        if figs is None:
            out[c] = (None, None)
        else:
            out[c] = (amount(figs, d["numerator"], policy), amount(figs, d["denominator"], policy))
    return out


@dataclass
class Term:
    indicator: str
    value: Decimal | None
    raw: Decimal
    capped: Decimal
    status: str
    exact: Decimal  # capped, before the 4-decimal rounding (what group averages take)


def score_terms(inputs: dict, group: dict, policy: dict, benchmarks: dict, averages: dict | None) -> list[Term]:
    defs = indicator_defs(policy)
    cap_factor = None if group.get("cap_factor") is None else D(group["cap_factor"])
    out = []
    for t in group["terms"]:
        d = defs[t["indicator"]]
        w, b = D(t["weight"]), benchmarks[t["indicator"]]
        cap = None if cap_factor is None else mul(cap_factor, w)
        num, den = inputs[t["indicator"]]
        if num is not None and den is not None and den != 0:
            v = q8(mul(div(num, den), D(d["multiplier"])))
            exact = div(mul(v, w), b)
            raw = q4(exact)
            if exact <= 0:
                out.append(Term(d["code"], v, raw, Decimal(0), "value", Decimal(0)))
            elif cap is not None and exact > cap:
                out.append(Term(d["code"], v, raw, q4(cap), "value", cap))
            else:
                out.append(Term(d["code"], v, raw, raw, "value", exact))
            continue
        if num is not None and den is not None and num > 0 and d["on_zero_denominator"] == "full_term":
            full = cap if cap is not None else w
            out.append(Term(d["code"], None, q4(full), q4(full), "zero_denominator_full_term", full))
            continue
        if num is not None and den is not None and num < 0 and d["on_zero_denominator"] == "full_term":
            out.append(Term(d["code"], None, Decimal(0), Decimal(0), "zero_denominator_negative", Decimal(0)))
            continue
        if t["missing"] == "zero":
            out.append(Term(d["code"], None, Decimal(0), Decimal(0), "missing_zero", Decimal(0)))
            continue
        avg = None if averages is None else averages.get(d["code"])
        if avg is None:
            out.append(Term(d["code"], None, Decimal(0), Decimal(0), "missing_group_has_no_values", Decimal(0)))
        else:
            out.append(Term(d["code"], None, q4(avg), q4(avg), "missing_group_average", avg))
    return out


def mean_terms(all_terms: list[list[Term]]) -> dict[str, Decimal]:
    sums: dict[str, list] = {}
    for terms in all_terms:
        for t in terms:
            if t.status in MEASURED:
                sums.setdefault(t.indicator, []).append(t.exact)
    with localcontext() as c:
        c.prec = 90
        return {k: sum(v, Decimal(0)) / len(v) for k, v in sums.items()}


def aggregate(members: list[dict], policy: dict) -> dict[str, tuple]:
    """Σ numerators, Σ denominators over the members whose own figure is measured."""
    out = {}
    for c, d in indicator_defs(policy).items():
        n_sum, d_sum, seen = Decimal(0), Decimal(0), False
        for inp in members:
            n, dn = inp[c]
            if n is None or dn is None or (dn == 0 and d["on_zero_denominator"] != "full_term"):
                continue
            n_sum, d_sum, seen = n_sum + n, d_sum + dn, True
        out[c] = (n_sum, d_sum) if seen else (None, None)
    return out


def averages_of(agg: dict, policy: dict) -> dict[str, Decimal]:
    out = {}
    for c, d in indicator_defs(policy).items():
        n, dn = agg.get(c, (None, None))
        if n is not None and dn is not None and dn > 0:
            out[c] = q4(mul(div(n, dn), D(d["multiplier"])))
    return out


def classify(scores: dict[str, Decimal], rule: dict) -> dict[str, tuple]:
    """subject -> (class, rank, score_rank, n) by the documented rules."""
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    n = len(ordered)
    limits = [math.ceil(n * D(b["cumulative_share"])) for b in rule["bands"]] if rule["mode"] == "rank" else []
    out = {}
    prev = None
    for i, (s, sc) in enumerate(ordered, start=1):
        if prev is not None and sc == prev[0]:
            label, srank = prev[1], prev[2]
        else:
            if rule["mode"] == "rank":
                label = next(b["label"] for b, lim in zip(rule["bands"], limits) if i <= lim)
            else:
                label = next((b["label"] for b in rule["bands"][:-1] if sc >= D(b["min_score"])),
                             rule["bands"][-1]["label"])
            srank = i
            prev = (sc, label, srank)
        out[s] = (label, i, srank, n)
    return out


def recommend(ent: dict, label: str, rules: dict, excluded: bool) -> tuple[str, list[str]]:
    flags = set(ent["flags"])
    reasons = []
    for f in rules["close_flags"]:
        if f in flags:
            reasons.append((f"flag_{f}", "close"))
    hazards = [f for f in rules["hazard_flags"] if f in flags]
    if label in rules["close_with_hazard_classes"]:
        reasons += [(f"class_with_{f}", "close") for f in hazards]
    if excluded:
        reasons.append(("not_evaluated", "none"))
    elif label in rules["upgrade_classes"]:
        reasons.append(("good_class_in_park", "none") if ent["in_park"] else ("good_class_outside_park", "upgrade"))
    elif label in rules["relocate_classes"]:
        reasons.append(("low_class_in_park", "upgrade") if ent["in_park"] else ("low_class_outside_park", "relocate"))
    else:
        reasons.append(("class_without_rule", "none"))
    best = max((d for _, d in reasons), key=STRENGTH.__getitem__, default="none")
    return best, [c for c, _ in reasons]


def resolve_benchmarks(policy: dict, last_avgs: dict | None) -> dict[str, dict[str, Decimal]]:
    out = {}
    for g in policy["groups"]:
        out[g["name"]] = {}
        for t in g["terms"]:
            b = t["benchmark"]
            if b["kind"] == "fixed":
                out[g["name"]][t["indicator"]] = D(b["value"])
            else:
                avg = (last_avgs or {}).get(g["name"], {}).get(t["indicator"])
                assert avg is not None and D(avg) > 0, "the model expected a 422 here"
                out[g["name"]][t["indicator"]] = q4(mul(D(b["factor"]), D(avg)))
    return out


@dataclass
class Expected:
    benchmarks: dict
    averages: dict
    results: dict  # code -> dict
    clusters: list
    without_data: int


def model_run(policy: dict, register: dict[str, dict], figures: dict[str, dict], last_avgs: dict | None,
              year: int = 0, execs: dict | None = None) -> Expected:
    """What a run of the county-year must answer, from the register, merged figures and policy. ``execs``: credit
    code -> the closures and relocations carried out (README: one closed with effect in a later year stays in that
    year's re-runs, and one relocated later is judged in the place it left)."""
    benchmarks = resolve_benchmarks(policy, last_avgs)
    year_end = f"{year}-12-31"
    active = {}
    for c, e in register.items():
        done = (execs or {}).get(c, [])
        if e["status"] != "active" and not any(x["kind"] == "close" and x["effective_on"] > year_end for x in done):
            continue
        later = sorted((x for x in done if x["kind"] == "relocate" and x["effective_on"] > year_end),
                       key=lambda x: (x["effective_on"], x["seq"]))
        if later:
            e = dict(e, in_park=later[0]["prior_in_park"], park_id=later[0]["prior_park_id"])
        active[c] = e
    evaluated = {c: e for c, e in active.items() if c in figures}
    groups = {c: group_of(e, figures[c], policy) for c, e in evaluated.items()}
    excluded = {}
    for c, e in evaluated.items():
        rule = next((x for x in policy["exclusions"] if x["flag"] in e["flags"]), None)
        if rule is not None:
            excluded[c] = rule
    ranked = [c for c in sorted(evaluated) if c not in excluded]
    inputs = {c: ratio_inputs(figures[c], policy) for c in ranked}
    scores: dict[str, dict] = {}
    averages: dict[str, dict] = {}
    placements: dict[str, tuple] = {}
    for g in policy["groups"]:
        members = [c for c in ranked if groups[c] == g["name"]]
        first = {c: score_terms(inputs[c], g, policy, benchmarks[g["name"]], None) for c in members}
        avgs = mean_terms(list(first.values()))
        for c in members:
            terms = score_terms(inputs[c], g, policy, benchmarks[g["name"]], avgs)
            adj = [b for b in policy["bonus_penalty"] if b["flag"] in evaluated[c]["flags"]]
            total = sum((t.capped for t in terms), Decimal(0)) + sum((D(b["points"]) for b in adj), Decimal(0))
            scores[c] = {"terms": terms, "adjustments": adj, "total": q4(total)}
        averages[g["name"]] = averages_of(aggregate([inputs[c] for c in members], policy), policy)
        placements.update(classify({c: scores[c]["total"] for c in members}, policy["class_rule"]))
    results = {}
    for c, e in evaluated.items():
        rule = excluded.get(c)
        label = rule["label"] if rule else placements[c][0]
        disp, reasons = recommend(e, label, policy["disposition"], rule is not None)
        results[c] = {"group": groups[c], "class_label": label, "excluded_by": rule["flag"] if rule else None,
                      "score": None if rule else scores[c], "rank": None if rule else placements[c][1],
                      "score_rank": None if rule else placements[c][2], "group_size": None if rule else placements[c][3],
                      "recommendation": disp, "reasons": reasons}
    # clusters: in-park members with a park id, T left out, summed figures, cluster_group's terms, no points
    cg = group_terms(policy, policy["cluster_group"])
    parks: dict[str, list[str]] = {}
    for c, e in evaluated.items():
        if e["in_park"] and e["park_id"] is not None and c not in excluded:
            parks.setdefault(e["park_id"], []).append(c)
    cin = {p: aggregate([ratio_inputs(figures[c], policy) for c in cs], policy) for p, cs in sorted(parks.items())}
    first = [score_terms(i, cg, policy, benchmarks[cg["name"]], None) for i in cin.values()]
    cavg = mean_terms(first)
    cscores = {}
    for p, i in cin.items():
        terms = score_terms(i, cg, policy, benchmarks[cg["name"]], cavg)
        cscores[p] = (terms, q4(sum((t.capped for t in terms), Decimal(0))))
    cplace = classify({p: s for p, (_, s) in cscores.items()}, policy["class_rule"])
    clusters = sorted(({"cluster_id": p, "members": sorted(parks[p]), "class_label": cplace[p][0], "rank": cplace[p][1],
                        "score_rank": cplace[p][2], "group_size": cplace[p][3], "terms": cscores[p][0],
                        "total": cscores[p][1]} for p in cscores), key=lambda x: x["rank"])
    return Expected(benchmarks, averages, results, clusters, len(active) - len(evaluated))


# --------------------------------------------------------------------------------------------------------------------
# the walk
# --------------------------------------------------------------------------------------------------------------------

@dataclass
class World:
    c: object
    rng: random.Random
    codes: list[str] = field(default_factory=list)
    runs: dict[str, dict] = field(default_factory=dict)  # run id -> frozen bytes of everything readable about it
    execs: dict[str, list] = field(default_factory=dict)  # credit code -> closures / relocations carried out
    decisions: int = 0
    refusals: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    # -- HTTP -----------------------------------------------------------------------------------------------------
    def get(self, path: str, **params):
        r = self.c.get(path, headers=ADMIN, params=params or None)
        assert r.status_code < 500, f"GET {path}: {r.status_code} {r.text[:400]}"
        return r

    def post(self, path: str, body: dict):
        r = self.c.post(path, headers=ADMIN, json=body)
        assert r.status_code < 500, f"5xx on POST {path} {body}: {r.status_code} {r.text[:600]}"
        return r

    def put(self, path: str, body: dict):
        r = self.c.put(path, headers=ADMIN, json=body)
        assert r.status_code < 500, f"5xx on PUT {path}: {r.status_code} {r.text[:600]}"
        return r

    # -- reads ----------------------------------------------------------------------------------------------------
    def register(self) -> dict[str, dict]:
        r = self.get("/v1/enterprises", county_code=COUNTY, limit=1000)
        assert r.status_code == 200, r.text
        return {e["credit_code"]: e for e in r.json()["items"]}

    def figures(self, year: int) -> dict[str, dict]:
        out = {}
        for c in self.codes:
            r = self.get(f"/v1/enterprises/{c}/indicators/{year}")
            if r.status_code == 200:
                out[c] = r.json()["figures"]
            else:
                assert r.status_code == 404, r.text
        return out

    def policy(self, year: int, version: int | None = None) -> dict:
        path = f"/v1/policies/{COUNTY}/{year}" + (f"/versions/{version}" if version else "")
        r = self.get(path)
        assert r.status_code == 200, r.text
        return r.json()

    def current_run(self, year: int) -> dict | None:
        r = self.get("/v1/evaluations", county_code=COUNTY, year=year)
        cur = [x for x in r.json() if x["current"]]
        assert len(cur) <= 1, f"two current runs for {year}: {cur}"
        return cur[0] if cur else None

    def snapshot(self) -> dict:
        """Everything a refused call must leave as it was."""
        snap = {"register": self.get("/v1/enterprises", county_code=COUNTY, limit=1000).json()}
        for y in (Y0, Y1):
            snap[f"policies{y}"] = self.get(f"/v1/policies/{COUNTY}/{y}/versions").json()
            snap[f"runs{y}"] = self.get("/v1/evaluations", county_code=COUNTY, year=y).json()
            for c in self.codes:
                snap[f"ind{y}{c}"] = self.get(f"/v1/enterprises/{c}/indicators/{y}").json()
                snap[f"dec{y}{c}"] = self.get(f"/v1/dispositions/{c}/{y}").json()
        snap["tasks"] = self.get("/v1/tasks", county_code=COUNTY, limit=1000).json()
        return snap

    def refused(self, what: str, call, expect: tuple[int, ...], reason: str | None = None):
        before = self.snapshot()
        r = call()
        assert r.status_code in expect, f"{what}: expected {expect}, got {r.status_code} {r.text[:400]}"
        body = r.json()
        assert "reason" in body, f"{what}: a 4xx without a reason: {body}"
        if reason is not None:
            assert body["reason"] == reason, f"{what}: reason {body['reason']!r}, expected {reason!r}"
        after = self.snapshot()
        diff = [k for k in before if before[k] != after[k]]
        assert not diff, f"DEFECT refused call changed state: {what} ({r.status_code} {body.get('reason')}) changed {diff}"
        self.refusals.append(f"{what}:{body['reason']}")
        return body


def fig_text(name: str, v: Decimal) -> str:
    return format(v.quantize(Decimal(1).scaleb(-SCALE[name]) if SCALE[name] else Decimal(1)), "f")


def random_figures(rng: random.Random, big: bool) -> dict[str, str]:
    land = D(rng.choice(["0", "3.5", "12", "25.7531", "40", "80.1"])) if rng.random() < 0.1 else \
        D(rng.randint(20000, 900000)) / 10000
    per_mu_tax = D(rng.randint(1, 60)) * 10000 + D(rng.randint(0, 9999))  # 元 per 亩
    tax = (land * per_mu_tax).quantize(Decimal("0.01")) if land else D(rng.randint(1, 99999999)) / 100
    revenue = D(rng.randint(25000000, 600000000)) if big else D(rng.randint(100000, 19000000))
    out = {"land": fig_text("land", land), "tax": fig_text("tax", tax), "revenue": fig_text("revenue", revenue)}
    va = (revenue * D(rng.randint(-5, 35)) / 100).quantize(Decimal("0.01"))
    out["value_added"] = fig_text("value_added", va)
    if rng.random() < 0.85:
        out["energy"] = fig_text("energy", D(rng.randint(0 if rng.random() < 0.1 else 1000, 4000000)) / 1000)
    if rng.random() < 0.85:
        out["electricity"] = str(rng.randint(0 if rng.random() < 0.05 else 10000, 90000000))
    if rng.random() < 0.8:
        out["employees"] = str(rng.randint(0 if rng.random() < 0.05 else 3, 1500))
    if rng.random() < 0.7:
        out["rnd"] = fig_text("rnd", (revenue * D(rng.randint(0, 60)) / 1000).quantize(Decimal("0.01")))
    r = rng.random()
    if r < 0.6:  # emissions of a few pollutants; some all zero; some only VOCs (weighted by no default)
        for p in rng.sample(POLLUTANTS, rng.randint(1, 3)):
            out[f"emissions.{p}"] = format((D(rng.randint(0, 200000)) / 10000).quantize(Decimal("0.0001")), "f")
    elif r < 0.7:
        out["emissions.COD"] = "0.0000"
    return out


def split_parts(figs: dict[str, str]) -> dict[str, dict[str, str]]:
    parts: dict[str, dict[str, str]] = {}
    for k, v in figs.items():
        dept = "ecology" if k.startswith("emissions.") else OWNER[k]
        parts.setdefault(dept, {})[k] = v
    return parts


FLAG_CHOICES = ["utility", "under_two_years", "high_tech", "specialized_sme", "safety_hazard", "environmental_hazard",
                "ecological_control_zone", "backward_equipment", "large_environmental_impact", "newly_merged"]


def random_enterprise(rng: random.Random, n: int) -> dict:
    in_park = rng.random() < 0.5
    flags = sorted(set(rng.sample(FLAG_CHOICES, rng.choice([0, 0, 0, 1, 1, 2]))))
    return {"credit_code": code(n), "name": f"企业{n}", "township_code": TOWNSHIP, "in_park": in_park,
            "park_id": rng.choice(["P-01", "P-02", "P-03"]) if in_park or rng.random() < 0.2 else None,
            "industry_code": rng.choice(["C2614", "C3311", "C1711", "C3985"]), "flags": flags,
            "scale": rng.choice([None, None, "规上", "规下"])}


def random_policy(rng: random.Random, base: dict, year: int, version: int, relative_ok: bool) -> dict:
    p = copy.deepcopy(base)
    p["version"] = version
    for g in p["groups"]:
        k = len(g["terms"])
        # weights summing to 100, some with decimals
        cuts = sorted(rng.sample(range(1, 400), k - 1))
        parts = [b - a for a, b in zip([0] + cuts, cuts + [400])]
        ws = [D(x) / 4 for x in parts]
        for t, w in zip(g["terms"], ws):
            t["weight"] = format(w.normalize(), "f")
            if relative_ok and rng.random() < 0.5:
                t["benchmark"] = {"kind": "relative", "factor": rng.choice(["1", "1.5", "2", "0.8"])}
            else:
                t["benchmark"] = {"kind": "fixed", "value": rng.choice(["0.3", "3", "10", "30", "200", "600", "2.5"])}
            t["missing"] = rng.choice(["zero", "group_average"])
        g["cap_factor"] = rng.choice([None, "1", "1.2", "1.5"])
    for i in p["indicators"]:
        if i["code"] in ("value_added_per_emission", "tax_per_electricity", "value_added_per_energy"):
            i["on_zero_denominator"] = rng.choice(["missing", "full_term"])
    p["bonus_penalty"] = [
        {"code": "high_tech", "flag": "high_tech", "points": rng.choice(["3", "2.5", "1.25"]), "description": "高新"},
        {"code": "sme", "flag": "specialized_sme", "points": rng.choice(["3", "0.0005"]), "description": "专精特新"},
        {"code": "safety", "flag": "safety_hazard", "points": rng.choice(["-5", "-2.75"]), "description": "安全隐患"},
    ][: rng.randint(0, 3)]
    if rng.random() < 0.5:
        shares = rng.choice([["0.20", "0.60", "0.95", "1"], ["0.1", "0.45", "0.9", "1"], ["0.3", "0.5", "0.8", "1"]])
        p["class_rule"] = {"mode": "rank", "bands": [{"label": lab, "cumulative_share": s, "meaning": ""}
                                                       for lab, s in zip("ABCD", shares)]}
    else:
        mins = sorted(rng.sample(range(5, 120), 3), reverse=True)
        p["class_rule"] = {"mode": "threshold", "bands": [
            {"label": lab, "min_score": (str(m) if m is not None else None), "meaning": ""}
            for lab, m in zip("ABCD", mins + [None])]}
    ex = [{"flag": "utility", "label": "T", "description": ""}]
    if rng.random() < 0.6:
        ex.append({"flag": "under_two_years", "label": "T", "description": ""})
    if rng.random() < 0.3:
        ex.append({"flag": "newly_merged", "label": "T", "description": ""})
    rng.shuffle(ex)
    p["exclusions"] = ex
    p["cluster_group"] = rng.choice(["规上", "规下"])
    p["group_rule"] = {"revenue_threshold_fen": rng.choice([2_000_000_000, 1_000_000_000, 500_000_000])}
    p["admission"] = {
        "investment_fen_per_mu": rng.choice([250_000_000, 200_000_000, 312_345_678]),
        "tax_fen_per_mu": rng.choice([15_000_000, 12_000_000, 17_777_777]),
        "industry_overrides": {
            "C26": {"investment_fen_per_mu": 300_000_000, "tax_fen_per_mu": 20_000_000},
            "26": {"investment_fen_per_mu": 111_000_000, "tax_fen_per_mu": 1_000_000},
            "C2614": {"investment_fen_per_mu": rng.choice([350_000_000, 280_000_001]), "tax_fen_per_mu": 25_000_000},
            "C17": {"investment_fen_per_mu": 150_000_000, "tax_fen_per_mu": 9_000_000},
        },
        "refused_industry_prefixes": [], "refuse_two_high": True, "refuse_listed": True,
        "require_park_or_cluster": True,
    }
    return p


# --------------------------------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------------------------------

def frozen_run(w: World, run_id: str) -> dict:
    """Everything readable about a run that must never change (run metadata but its 'current' flag, when it
    was last requested and the register's without_data count; every results page; every breakdown; its clusters)."""
    meta = w.get(f"/v1/evaluations/{run_id}").json()
    for k in ("current", "last_requested_at", "without_data"):
        meta.pop(k)
    pages, after = [], ""
    while True:
        r = w.get(f"/v1/evaluations/{run_id}/enterprises", after=after, limit=7)
        assert r.status_code == 200, r.text
        pages.append(r.content)
        after = r.json()["next_after"]
        if after is None:
            break
    items = [i for p in pages for i in json.loads(p)["items"]]
    breakdowns = {i["credit_code"]: w.get(i["breakdown_ref"]).content for i in items}
    clusters = w.get(f"/v1/evaluations/{run_id}/clusters").content
    return {"meta": meta, "pages": pages, "breakdowns": breakdowns, "clusters": clusters}


def check_run(w: World, year: int, run: dict, exp: Expected, policy_doc: dict) -> None:
    rid = run["run_id"]
    pol = policy_doc["policy"]
    assert run["policy_version"] == pol["version"] and run["policy_hash"] == policy_doc["policy_hash"], \
        f"{rid}: run names policy v{run['policy_version']} {run['policy_hash'][:10]}, current is v{pol['version']}"
    for g, m in exp.benchmarks.items():
        got = {k: D(v) for k, v in run["benchmarks"][g].items()}
        assert got == m, f"DEFECT {rid}: benchmarks of {g} {got} != model {m}"
    for g, m in exp.averages.items():
        got = {k: D(v) for k, v in run["averages"].get(g, {}).items()}
        assert got == m, f"DEFECT {rid}: group averages of {g} {got} != model Σnum/Σden {m}"
    assert run["without_data"] == exp.without_data, f"{rid}: without_data {run['without_data']} != {exp.without_data}"
    assert run["enterprise_count"] == len(exp.results)
    counts: dict = {}
    for c, e in exp.results.items():
        counts.setdefault(e["group"], {}).setdefault(e["class_label"], 0)
        counts[e["group"]][e["class_label"]] += 1
    assert run["class_counts"] == counts, f"DEFECT {rid}: class_counts {run['class_counts']} != {counts}"
    rows = {}
    after = ""
    while True:
        page = w.get(f"/v1/evaluations/{rid}/enterprises", after=after, limit=1000).json()
        rows.update({i["credit_code"]: i for i in page["items"]})
        after = page["next_after"]
        if after is None:
            break
    assert set(rows) == set(exp.results), f"{rid}: results for {sorted(rows)} != expected {sorted(exp.results)}"
    for c, e in exp.results.items():
        b = w.get(f"/v1/evaluations/{rid}/enterprises/{c}").json()
        row = rows[c]
        where = f"{rid} {c} ({e['group']}, v{pol['version']})"
        assert b["group"] == e["group"], f"DEFECT {where}: group {b['group']} != {e['group']}"
        assert (b["class_label"], b["excluded_by"]) == (e["class_label"], e["excluded_by"]), \
            f"DEFECT {where}: class {b['class_label']}/{b['excluded_by']} != model {e['class_label']}/{e['excluded_by']}"
        assert (b["rank"], b["score_rank"], b["group_size"]) == (e["rank"], e["score_rank"], e["group_size"]), \
            f"DEFECT {where}: rank {(b['rank'], b['score_rank'], b['group_size'])} != {(e['rank'], e['score_rank'], e['group_size'])}"
        assert row["class_label"] == b["class_label"] and row["rank"] == b["rank"]
        if e["score"] is None:
            assert b["score"] is None and row["score"] is None, f"DEFECT {where}: an excluded (T) enterprise has a score"
        else:
            s = b["score"]
            # the breakdown adds up to the score, exactly, from what it shows
            shown = sum((D(t["capped_term"]) for t in s["terms"]), Decimal(0)) + \
                sum((D(a["points"]) for a in s["adjustments"]), Decimal(0))
            assert D(s["total"]) == shown, f"DEFECT {where}: total {s['total']} != shown terms + points {shown}"
            assert row["score"] == s["total"], f"{where}: listing score {row['score']} != breakdown {s['total']}"
            # each shown term recomputes from the value, weight and benchmark beside it
            for t in s["terms"]:
                if t["status"] == "value":
                    exact = div(mul(D(t["value"]), D(t["weight"])), D(t["benchmark"]))
                    assert D(t["raw_term"]) == q4(exact), f"DEFECT {where}: {t['indicator']} raw {t['raw_term']} != " \
                                                          f"value x weight / benchmark = {q4(exact)}"
            got = [(t["indicator"], None if t["value"] is None else D(t["value"]), D(t["raw_term"]),
                    D(t["capped_term"]), t["status"]) for t in s["terms"]]
            want = [(t.indicator, t.value, t.raw, t.capped, t.status) for t in e["score"]["terms"]]
            assert got == want, f"DEFECT {where}: terms differ from the model:\n got  {got}\n want {want}"
            assert [a["code"] for a in s["adjustments"]] == [a["code"] for a in e["score"]["adjustments"]], \
                f"DEFECT {where}: adjustments {s['adjustments']} != {e['score']['adjustments']}"
            assert D(s["total"]) == e["score"]["total"], f"DEFECT {where}: total {s['total']} != model {e['score']['total']}"
        rec = b["recommendation"]
        assert rec["disposition"] == e["recommendation"] == row["recommendation"], \
            f"DEFECT {where}: recommendation {rec['disposition']} (listing {row['recommendation']}) != model {e['recommendation']}"
        assert [x["code"] for x in rec["reasons"]] == e["reasons"], \
            f"DEFECT {where}: reasons {[x['code'] for x in rec['reasons']]} != {e['reasons']}"
        assert all(x["detail"] for x in rec["reasons"]), f"{where}: a reason without its detail"
    # clusters kept with the run
    cl = w.get(f"/v1/evaluations/{rid}/clusters").json()
    assert cl["group"] == pol["cluster_group"] and cl["policy_hash"] == run["policy_hash"]
    got = [(x["cluster_id"], x["members"], x["class_label"], x["rank"], x["score_rank"], x["group_size"],
            D(x["score"]["total"])) for x in cl["clusters"]]
    want = [(x["cluster_id"], x["members"], x["class_label"], x["rank"], x["score_rank"], x["group_size"], x["total"])
            for x in exp.clusters]
    assert got == want, f"DEFECT {rid}: cluster ranking differs from the model:\n got  {got}\n want {want}"
    for x, m in zip(cl["clusters"], exp.clusters):
        s = x["score"]
        assert s["adjustments"] == [], f"{rid}: a cluster with bonus/penalty points"
        assert D(s["total"]) == sum((D(t["capped_term"]) for t in s["terms"]), Decimal(0))
        gt = [(t["indicator"], None if t["value"] is None else D(t["value"]), D(t["capped_term"]), t["status"])
              for t in s["terms"]]
        wt = [(t.indicator, t.value, t.capped, t.status) for t in m["terms"]]
        assert gt == wt, f"DEFECT {rid} cluster {x['cluster_id']}: terms {gt} != model {wt}"
    if cl is not None:
        cur = w.current_run(year)
        if cur is not None and cur["run_id"] == rid:
            now_cl = w.get(f"/v1/clusters/{COUNTY}/{year}/ranking").json()
            assert now_cl["run_id"] == rid and now_cl["clusters"] == cl["clusters"] and \
                now_cl["content_hash"] == cl["content_hash"], f"DEFECT {rid}: county ranking != the current run's"


def evaluate_and_check(w: World, year: int) -> str | None:
    register = w.register()
    figures = w.figures(year)
    pdoc = w.policy(year)
    pol = pdoc["policy"]
    uses_relative = any(t["benchmark"]["kind"] == "relative" for g in pol["groups"] for t in g["terms"])
    prev = w.current_run(year - 1) if uses_relative else None
    if uses_relative and (prev is None or any(
            D(prev["averages"].get(g["name"], {}).get(t["indicator"], "0")) <= 0
            for g in pol["groups"] for t in g["terms"] if t["benchmark"]["kind"] == "relative")):
        w.refused(f"evaluate {year} with a relative benchmark and no last-year average",
                  lambda: w.post("/v1/evaluations", {"county_code": COUNTY, "year": year}), (422,),
                  "benchmark_needs_last_year_average")
        return None
    last = None if prev is None else prev["averages"]
    exp = model_run(pol, register, figures, last, year, w.execs)
    if not exp.results:
        w.refused(f"evaluate {year} with nothing", lambda: w.post("/v1/evaluations", {"county_code": COUNTY, "year": year}),
                  (422,))
        return None
    r = w.post("/v1/evaluations", {"county_code": COUNTY, "year": year})
    assert r.status_code in (200, 201), r.text
    run = r.json()["run"]
    rid = run["run_id"]
    w.log.append(f"evaluate {year} -> {rid} created={r.json()['created']} v{run['policy_version']}")
    assert run["current"], f"{rid}: the run just requested is not current"
    if rid in w.runs:
        assert r.status_code == 200 and not r.json()["created"], f"{rid} found again but answered {r.status_code}"
    check_run(w, year, run, exp, pdoc)
    frozen = frozen_run(w, rid)
    if rid in w.runs:
        assert frozen == w.runs[rid], f"DEFECT run {rid} found again but reads differently from when it was made"
    w.runs[rid] = frozen
    # the same inputs and policy again: the same run, 200, nothing new
    r2 = w.post("/v1/evaluations", {"county_code": COUNTY, "year": year})
    assert r2.status_code == 200 and not r2.json()["created"], f"DEFECT re-run over unchanged inputs made a new run: {r2.text[:300]}"
    assert r2.json()["run"]["content_hash"] == run["content_hash"] and r2.json()["run"]["run_id"] == rid, \
        f"DEFECT re-run gave content hash {r2.json()['run']['content_hash']} != {run['content_hash']}"
    assert frozen_run(w, rid) == frozen, f"DEFECT re-run changed what run {rid} reads"
    return rid


def check_old_runs(w: World) -> None:
    for rid, frozen in w.runs.items():
        now = frozen_run(w, rid)
        for k in frozen:
            if k == "breakdowns":
                diff = [c for c in frozen[k] if frozen[k][c] != now[k].get(c)]
                assert not diff, f"DEFECT old run {rid}: breakdowns of {diff} changed since it was made"
            else:
                assert now[k] == frozen[k], f"DEFECT old run {rid}: its {k} changed since it was made"


# --------------------------------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------------------------------

def step_correct(w: World, year: int) -> None:
    c = w.rng.choice(w.codes)
    r = w.get(f"/v1/enterprises/{c}/indicators/{year}")
    if r.status_code != 200:
        return
    doc = r.json()
    srcs = doc["sources"]
    choices = [k for k in doc["figures"] if not k.startswith("emissions.") and srcs.get(k) != "county"]
    if not choices:
        return
    k = w.rng.choice(choices)
    old = D(doc["figures"][k])
    new = (old * D(w.rng.choice(["0.5", "1.3", "2", "0.9"]))).quantize(Decimal(1).scaleb(-SCALE[k]), ROUND_HALF_UP)
    if new == old:
        new = old + Decimal(1)
    body = {"credit_code": c, "year": year, "department": srcs[k], "fields": {k: fig_text(k, new)}}
    r = w.post("/v1/indicators", body)
    assert r.status_code == 201 and r.json()["result"] == "recorded", f"correction refused: {r.text[:300]}"
    assert r.json()["figures"][k] == fig_text(k, new)
    r = w.post("/v1/indicators", body)  # the same part again
    assert r.status_code == 200 and r.json()["result"] == "unchanged", f"DEFECT repeated part not unchanged: {r.text[:300]}"
    w.log.append(f"correct {c} {year} {k} {old} -> {new}")
    if w.rng.random() < 0.3:  # taken back: the inputs are as before, so the old run is found again
        body["fields"] = {k: doc["figures"][k]}
        assert w.post("/v1/indicators", body).status_code == 201
        w.log.append(f"  reverted {c} {k}")


def step_conflict(w: World, year: int) -> None:
    c = w.rng.choice(w.codes)
    r = w.get(f"/v1/enterprises/{c}/indicators/{year}")
    if r.status_code != 200:
        return
    doc = r.json()
    k = w.rng.choice([x for x in doc["figures"] if not x.startswith("emissions.")] or [None])
    if k is None:
        return
    other = "industry" if doc["sources"][k] != "industry" else "tax"
    new = D(doc["figures"][k]) + 1
    w.refused(f"conflicting figure {c} {k} from {other}",
              lambda: w.post("/v1/indicators", {"credit_code": c, "year": year, "department": other,
                                                "fields": {k: fig_text(k, new)}}), (409,), "conflicting_departments")


def step_county_settles(w: World, year: int) -> None:
    c = w.rng.choice(w.codes)
    r = w.get(f"/v1/enterprises/{c}/indicators/{year}")
    if r.status_code != 200 or "tax" not in r.json()["figures"]:
        return
    doc = r.json()
    new = fig_text("tax", D(doc["figures"]["tax"]) * D("1.1"))
    r = w.post("/v1/indicators", {"credit_code": c, "year": year, "department": "county", "fields": {"tax": new}})
    assert r.status_code in (200, 201), r.text
    got = r.json()
    assert got["figures"]["tax"] == new and got["sources"]["tax"] == "county", f"DEFECT county part did not override: {got}"
    tax_part = next((p for p in got["parts"] if p["department"] == "tax"), None)
    if tax_part is not None and "tax" in tax_part["figures"]:
        assert tax_part["figures"]["tax"] == doc["figures"]["tax"] or doc["sources"]["tax"] == "county", \
            f"DEFECT the tax department's own part changed when the county settled: {tax_part}"
        w.refused(f"tax dept corrects a county-settled figure {c}",
                  lambda: w.post("/v1/indicators", {"credit_code": c, "year": year, "department": "tax",
                                                    "fields": {"tax": fig_text("tax", D(new) + 7)}}),
                  (409,), "conflicting_departments")
    w.log.append(f"county settles {c} {year} tax={new}")


def step_policy(w: World, year: int) -> None:
    cur = w.policy(year)
    base = cur["policy"]
    prev = w.current_run(year - 1)
    p = random_policy(w.rng, base, year, base["version"] + 1, relative_ok=prev is not None or w.rng.random() < 0.2)
    if w.rng.random() < 0.25:  # a stale version number: refused, nothing changes
        stale = dict(p, version=base["version"] + 2)
        w.refused("policy with a skipped version", lambda: w.put(f"/v1/policies/{COUNTY}/{year}", {"policy": stale}),
                  (409,), "policy_version_conflict")
    if w.rng.random() < 0.2:  # weights not summing to 100
        bad = copy.deepcopy(p)
        bad["groups"][0]["terms"][0]["weight"] = format(D(bad["groups"][0]["terms"][0]["weight"]) + D("0.5"), "f")
        w.refused("policy with weights of 100.5", lambda: w.put(f"/v1/policies/{COUNTY}/{year}", {"policy": bad}), (422,))
    r = w.put(f"/v1/policies/{COUNTY}/{year}", {"policy": p, "note": "walk"})
    assert r.status_code == 200, r.text
    assert r.json()["policy"]["version"] == p["version"] or not r.json()["changed"], r.text
    again = w.put(f"/v1/policies/{COUNTY}/{year}", {"policy": p, "note": "walk"})
    assert again.status_code == 200 and not again.json()["changed"], f"DEFECT same policy again changed: {again.text[:300]}"
    w.log.append(f"policy {year} v{r.json()['policy']['version']} mode={p['class_rule']['mode']} "
                 f"cluster={p['cluster_group']}")


def step_register_change(w: World) -> None:
    c = w.rng.choice(w.codes)
    e = w.get(f"/v1/enterprises/{c}").json()
    flags = set(e["flags"])
    f = w.rng.choice(FLAG_CHOICES)
    flags ^= {f}
    body = {"credit_code": c, "name": e["name"], "township_code": e["township_code"], "in_park": e["in_park"],
            "park_id": e["park_id"], "industry_code": e["industry_code"], "flags": sorted(flags), "scale": e["scale"]}
    r = w.post("/v1/enterprises", body)
    assert r.status_code == 200 and r.json()["result"] == "updated", r.text
    r = w.post("/v1/enterprises", body)
    assert r.status_code == 200 and r.json()["result"] == "unchanged", f"DEFECT same register entry again: {r.text[:300]}"
    w.log.append(f"register {c} flags {sorted(flags)}")


def step_decide(w: World, year: int) -> None:
    run = w.current_run(year)
    if run is None:
        w.refused("decision before any run", lambda: w.post("/v1/dispositions", {
            "credit_code": w.codes[0], "year": year, "decided_by": "县政府"}), (409,), "not_assessed")
        return
    rows = w.get(f"/v1/evaluations/{run['run_id']}/enterprises", limit=1000).json()["items"]
    row = w.rng.choice(rows)
    c = row["credit_code"]
    hist = w.get(f"/v1/dispositions/{c}/{year}").json()
    if hist["standing"] and hist["standing"]["status"] == "executed":
        return
    if w.get(f"/v1/enterprises/{c}").json()["status"] != "active":
        w.refused(f"decision on exited {c}", lambda: w.post("/v1/dispositions", {
            "credit_code": c, "year": year, "decided_by": "县政府"}), (409,))
        return
    options = ["close", "relocate", "upgrade", "none"]
    decided = w.rng.choice([None, None] + options)
    if decided is not None and decided != row["recommendation"] and w.rng.random() < 0.4:
        w.refused(f"override of {c} without a reason", lambda: w.post("/v1/dispositions", {
            "credit_code": c, "year": year, "decided": decided, "decided_by": "县政府常务会议"}), (422,), "invalid_decision")
    final = decided or row["recommendation"]
    deadline = None if final == "none" or w.rng.random() < 0.4 else f"{year + 1}-0{w.rng.randint(1, 9)}-15"
    body = {"credit_code": c, "year": year, "decided_by": "县政府常务会议 " + str(w.decisions),
            "reason": "" if decided in (None, row["recommendation"]) else "县政府研究决定",
            "rectification_deadline": deadline}
    if decided is not None:
        body["decided"] = decided
    w.decisions += 1
    r = w.post("/v1/dispositions", body)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["recommended"] == row["recommendation"], \
        f"DEFECT decision recorded recommended={d['recommended']}, the current run recommends {row['recommendation']}"
    assert d["decided"] == final and d["overridden"] == (final != row["recommendation"]) and d["run_id"] == run["run_id"]
    r2 = w.post("/v1/dispositions", body)
    assert r2.status_code == 200 and r2.json()["id"] == d["id"], f"DEFECT same decision again: {r2.status_code} {r2.text[:300]}"
    h = w.get(f"/v1/dispositions/{c}/{year}").json()
    assert h["standing"]["id"] == d["id"] and sum(1 for x in h["history"] if x["status"] != "superseded") == 1
    tasks = [t for t in w.get("/v1/tasks", county_code=COUNTY, status="open", limit=1000).json()["items"]
             if t["decision_id"] == d["id"]]
    assert len(tasks) == (1 if deadline else 0), f"DEFECT decision {d['id']} with deadline {deadline} has tasks {tasks}"
    w.log.append(f"decide {c} {year} {final} (recommended {row['recommendation']}) task={deadline}")


def step_execute(w: World, year: int) -> None:
    """The county decides a closure or relocation and records it carried out, effective in or after the year."""
    run = w.current_run(year)
    if run is None:
        return
    rows = w.get(f"/v1/evaluations/{run['run_id']}/enterprises", limit=1000).json()["items"]
    rows = [r for r in rows if w.get(f"/v1/enterprises/{r['credit_code']}").json()["status"] == "active"]
    if not rows:
        return
    row = w.rng.choice(rows)
    c = row["credit_code"]
    hist = w.get(f"/v1/dispositions/{c}/{year}").json()
    if hist["standing"] and hist["standing"]["status"] == "executed":
        return
    ent = w.get(f"/v1/enterprises/{c}").json()
    kind = w.rng.choice(["close", "relocate"])
    body = {"credit_code": c, "year": year, "decided": kind, "decided_by": f"县政府 exec {w.decisions}",
            "reason": "" if kind == row["recommendation"] else "县政府研究决定"}
    w.decisions += 1
    r = w.post("/v1/dispositions", body)
    assert r.status_code == 201, r.text
    eff = w.rng.choice([f"{year}-06-30", f"{year + 1}-03-01", "2025-01-10"])
    park = w.rng.choice([p for p in ("P-01", "P-02", "P-03") if not (ent["in_park"] and ent["park_id"] == p)])
    ex = {"effective_on": eff, "to_park_id": park if kind == "relocate" else None, "note": "walk"}
    r = w.post(f"/v1/dispositions/{c}/{year}/execution", ex)
    assert r.status_code == 201, r.text
    again = w.post(f"/v1/dispositions/{c}/{year}/execution", ex)
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"], f"DEFECT same execution again: {again.text[:300]}"
    w.execs.setdefault(c, []).append({"kind": kind, "effective_on": eff, "prior_in_park": ent["in_park"],
                                      "prior_park_id": ent["park_id"], "seq": r.json()["id"]})
    after = w.get(f"/v1/enterprises/{c}").json()
    if kind == "close":
        assert after["status"] == "exited"
    else:
        assert after["in_park"] and after["park_id"] == park
    w.log.append(f"execute {kind} {c} {year} effective {eff} (was in_park={ent['in_park']} {ent['park_id']})")


def step_task(w: World) -> None:
    c = w.rng.choice(w.codes)
    tid = f"T-{w.rng.randint(1, 6)}"
    body = {"task_id": tid, "credit_code": c, "disposition": w.rng.choice(["close", "relocate", "upgrade"]),
            "deadline": f"{Y1 + 1}-06-30", "year": Y1, "note": "整治"}
    existing = w.get(f"/v1/tasks/{tid}")
    if existing.status_code == 200:
        e = existing.json()
        same = {"task_id": tid, "credit_code": e["credit_code"], "disposition": e["disposition"],
                "deadline": str(e["deadline"]), "year": e["year"], "note": e["note"]}
        r = w.post("/v1/tasks", same)
        assert r.status_code == 200 and r.json()["id"] == tid, f"DEFECT same task again: {r.status_code} {r.text[:300]}"
        other = dict(same, note=same["note"] + "（改）")
        w.refused(f"task {tid} reused", lambda: w.post("/v1/tasks", other), (409,), "task_id_reused")
        return
    if w.get(f"/v1/enterprises/{c}").json()["status"] != "active":
        w.refused(f"task for exited {c}", lambda: w.post("/v1/tasks", body), (409,), "enterprise_not_active")
        return
    r = w.post("/v1/tasks", body)
    assert r.status_code == 201, r.text
    r = w.post("/v1/tasks", body)
    assert r.status_code == 200, f"DEFECT same task again: {r.status_code} {r.text[:300]}"
    w.log.append(f"task {tid} {c}")


def step_project(w: World, year: int, n: int) -> None:
    """Admission at, just below and just above each threshold, under the per-industry overrides."""
    pdoc = w.policy(year)
    adm = pdoc["policy"]["admission"]
    industry = w.rng.choice(["C2614", "2614", "C2619", "C1711", "C3311", "2611"])
    # the most specific matching override (more digits, then one naming its door)
    door = {"26": "C", "17": "C", "33": "C"}
    ind_door = industry[0] if industry[0].isalpha() else door.get(industry[:2])
    ind_digits = industry[1:] if industry[0].isalpha() else industry
    best = None
    for k in adm["industry_overrides"]:
        kd = k[0] if k[0].isalpha() else door.get(k[:2])
        kdig = k[1:] if k[0].isalpha() else k
        if (kd is None or kd == ind_door) and ind_digits.startswith(kdig):
            key = (len(kdig), k[0].isalpha(), k)
            if best is None or key > best[0]:
                best = (key, k)
    inv_t, tax_t = adm["investment_fen_per_mu"], adm["tax_fen_per_mu"]
    if best is not None:
        o = adm["industry_overrides"][best[1]]
        inv_t, tax_t = o["investment_fen_per_mu"], o["tax_fen_per_mu"]
    land_units = w.rng.choice([10000, 37531, 125000, 3])  # 0.0001 亩
    applicant = w.rng.choice(w.codes)
    ent = w.get(f"/v1/enterprises/{applicant}").json()
    listed = bool({"safety_hazard", "environmental_hazard"} & set(ent["flags"]))
    for i, (dinv, dtax) in enumerate([(0, 0), (-1, 0), (0, -1), (1, 1), (-1, -1)]):
        # exactly at: investment_fen x 10^4 = threshold x land; ceil so the figure reaches the threshold
        inv = -(-inv_t * land_units // 10000) + dinv
        tax = -(-tax_t * land_units // 10000) + dtax
        pid = f"PRJ-{year}-{n}-{i}"
        body = {"project_id": pid, "applicant_credit_code": applicant, "county_code": COUNTY, "year": year,
                "park_id": "P-01", "land": format(D(land_units) / 10000, "f"), "investment": format(D(inv) / 100, "f"),
                "expected_yearly_tax": format(D(tax) / 100, "f"), "industry_code": industry}
        r = w.post("/v1/projects", body)
        assert r.status_code == 201, r.text
        out = r.json()
        inv_ok = inv * 10000 >= inv_t * land_units
        tax_ok = tax * 10000 >= tax_t * land_units
        want_fail = ([] if not listed else ["applicant_on_safety_or_env_list"]) + \
            ([] if inv_ok else ["investment_per_mu_below_threshold"]) + ([] if tax_ok else ["tax_per_mu_below_threshold"])
        got_fail = [f["code"] for f in out["failures"]]
        assert got_fail == want_fail and out["admitted"] == (not want_fail), \
            f"DEFECT project {pid} ({industry}, inv {inv} fen, tax {tax} fen on {land_units} units; thresholds " \
            f"{inv_t}/{tax_t} via {best and best[1]}): failures {got_fail} != {want_fail}"
        assert out["override_prefix"] == (best and best[1]), f"DEFECT {pid}: override {out['override_prefix']} != {best and best[1]}"
        assert D(out["investment_threshold_per_mu"]) == D(inv_t) / 100 and D(out["tax_threshold_per_mu"]) == D(tax_t) / 100
        floor_inv = (D(inv) * 10000 / D(land_units) / 100).quantize(Decimal("0.01"), rounding="ROUND_FLOOR")
        assert D(out["investment_per_mu"]) == floor_inv, f"{pid}: investment per 亩 {out['investment_per_mu']} != {floor_inv}"
        for f in out["failures"]:
            if f["figure"] is not None:
                assert D(f["figure"]) < D(f["threshold"]), f"DEFECT {pid}: failed figure {f['figure']} shown reaching {f['threshold']}"
        assert out["policy_version"] == pdoc["policy"]["version"]
        latest = None
        for y in (Y1, Y0):
            cur = w.current_run(y)
            if cur is not None:
                rr = w.get(f"/v1/evaluations/{cur['run_id']}/enterprises/{applicant}")
                if rr.status_code == 200:
                    latest = rr.json()["class_label"]
                    break
        assert out["project_class"] == latest, f"DEFECT {pid}: project_class {out['project_class']} != latest {latest}"
        t = pdoc["policy"]["treatments"].get(latest) if latest else None
        allowed = t is None or (t["new_construction_land_allowed"] and t["industrial_land_allowed"])
        assert out["land_quota_allowed"] == allowed, f"DEFECT {pid}: land_quota_allowed {out['land_quota_allowed']} for class {latest}"
        again = w.post("/v1/projects", body)
        assert again.status_code == 200 and again.json() == out, f"DEFECT project {pid} again: {again.status_code}"
        if i == 0:
            w.refused(f"project {pid} reused", lambda: w.post("/v1/projects", dict(body, land="99")), (409,), "project_id_reused")


# --------------------------------------------------------------------------------------------------------------------

@pytest.fixture
def assessment(pg_url, kafka_bootstrap):
    with running_service("assessment", pg_url, kafka_bootstrap, background=False) as (runtime, client):
        yield client


def test_seeded_walk_explainable_and_reproducible(assessment):
    rng = random.Random(SEED)
    w = World(assessment, rng)
    n_ent = 16
    for n in range(1, n_ent + 1):
        body = random_enterprise(rng, n)
        r = w.post("/v1/enterprises", body)
        assert r.status_code == 201, r.text
        assert w.post("/v1/enterprises", body).json()["result"] == "unchanged"
        w.codes.append(body["credit_code"])
    for n in (n_ent + 1, n_ent + 2):  # twins of enterprise 1 (same scale, flags and figures): tied scores
        body = dict(random_enterprise(rng, n), scale="规上", flags=[], in_park=False, park_id=None)
        assert w.post("/v1/enterprises", body).status_code == 201
        w.codes.append(body["credit_code"])
    first = w.get(f"/v1/enterprises/{w.codes[0]}").json()
    assert w.post("/v1/enterprises", {k: first[k] for k in ("credit_code", "name", "township_code", "in_park",
                                                            "park_id", "industry_code")} | {"flags": [], "scale": "规上"}).status_code == 200
    for year in (Y0, Y1):
        twin = random_figures(rng, True)
        for i, c in enumerate(w.codes):
            if i >= n_ent or (i == 0):
                parts = split_parts(twin)
            elif rng.random() < 0.1:
                continue  # no figures this year: not evaluated (without_data)
            else:
                parts = split_parts(random_figures(rng, rng.random() < 0.5))
            for dept, figs in parts.items():
                r = w.post("/v1/indicators", {"credit_code": c, "year": year, "department": dept, "fields": figs})
                assert r.status_code == 201, r.text
    # a policy put on Y0 with a relative benchmark: no Y-1 run, so the evaluation is refused and changes nothing
    evaluate_and_check(w, Y0)
    p = random_policy(rng, w.policy(Y0)["policy"], Y0, w.policy(Y0)["policy"]["version"] + 1, relative_ok=False)
    assert w.put(f"/v1/policies/{COUNTY}/{Y0}", {"policy": p}).status_code == 200
    evaluate_and_check(w, Y0)
    steps = 0
    while steps < 24:
        steps += 1
        year = Y1 if rng.random() < 0.7 else Y0
        op = rng.choice(["correct", "correct", "conflict", "county", "policy", "policy", "register", "decide",
                         "decide", "task", "project", "evaluate", "evaluate", "execute", "execute"])
        if op == "correct":
            step_correct(w, year)
        elif op == "conflict":
            step_conflict(w, year)
        elif op == "county":
            step_county_settles(w, year)
        elif op == "policy":
            step_policy(w, year)
        elif op == "register":
            step_register_change(w)
        elif op == "decide":
            step_decide(w, year)
        elif op == "task":
            step_task(w)
        elif op == "execute":
            step_execute(w, year)
        elif op == "project":
            step_project(w, year, steps)
        if op in ("evaluate", "policy", "correct", "execute") or rng.random() < 0.2:
            evaluate_and_check(w, year)
            check_old_runs(w)
    evaluate_and_check(w, Y0)
    evaluate_and_check(w, Y1)
    check_old_runs(w)
    assert len(w.runs) >= 4, f"the walk made too few runs to say anything: {w.log}"
