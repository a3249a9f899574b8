"""Review (Dec 02): number formats as a county finance system reading the APIs relies on them.

The standard (README "The ledger", design.md): exact money and quantities, integers of the smallest unit inside,
decimal strings outside, never floats. Checked across the four services:

1. the OpenAPI documents (docs/openapi/ and each app's /openapi.json) type no field `number`;
2. every JSON body and event of a realistic history (tests/integration/test_review_trace_money_dec01.py's story,
   reused: an exit, releases, two allocations, a finalized month posted to the ledger) holds no float, and every
   amount is written with its asset's scale (CNY two decimals, COD four, ENERGY three, ...);
3. totals shown beside lines equal the exact sum of the lines;
4. the same odd decimal string ("1e3", "1_000", "+12", full-width digits, ...) is treated the same way by every
   service's door: refused with a 4xx machine-readable reason, or accepted with one documented meaning.
"""
from __future__ import annotations

import copy
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from shared.contracts import topics as T
from tests.integration.test_review_trace_money_dec01 import (  # noqa: F401  (module fixtures reused)
    ECOLOGY, FINANCE, OFFICE, _outbox_envelopes, finalized, services, story,
)
from tests.support.services import ADMIN, ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NAMES = ("ledger", "quota", "settlement", "assessment")
SCALES = {"LAND": 4, "ENERGY": 3, "COD": 4, "NH3N": 4, "SO2": 4, "NOX": 4, "VOCS": 4, "CNY": 2}
# quantities of the dict's own "asset"
QTY_KEYS = {"amount", "released", "retired", "allocated", "reserved", "available", "incoming", "remaining",
            "debits_pending", "debits_posted", "credits_pending", "credits_posted", "balance", "posted_amount"}
# money (CNY) whatever asset the dict is about
MONEY_KEYS = {"amount_due", "price_per_unit", "buyback_price_per_unit", "net", "payable", "receivable",
              "money_total", "draft_total", "finalized_total", "finalized_net", "finalized_payable",
              "finalized_receivable", "cumulative_finalized_net", "total"}


def _get(client, path, headers=ADMIN, **params):
    r = client.get(path, headers=headers, params=params or None)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
    return r.json()


def _places(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


@pytest.fixture(scope="module")
def bodies(services, story, finalized):
    """Every read a finance system would make of this history, plus each service's published events."""
    l, q, s, a = (services[n][1] for n in NAMES)
    C, out = story.C, {}
    out["ledger:pool"] = _get(l, f"/v1/accounts/county:{C}/pool/COD")
    out["ledger:enterprise_cny"] = _get(l, f"/v1/accounts/enterprise:{story.E}/CNY")
    out["ledger:balances"] = _get(l, "/v1/balances", address_prefix=f"county:{C}")
    out["ledger:balances_query"] = _post(l, "/v1/balances:query", {"account_ids": [
        f"county:{C}/pool/COD", f"enterprise:{story.E}/CNY", f"project:{story.P1}/COD", f"project:{story.P1}/CNY"]})
    out["ledger:entries"] = _get(l, f"/v1/accounts/county:{C}/pool/COD/entries")
    out["ledger:transfer"] = _get(l, f"/v1/transfers/settlement:{C}:{story.month}:L00001")
    out["ledger:assets"] = _get(l, "/v1/assets")
    out["quota:pool"] = _get(q, f"/v1/counties/{C}/pool")
    out["quota:lots"] = _get(q, f"/v1/counties/{C}/lots")
    out["quota:freed"] = _get(q, f"/v1/enterprises/{story.E}/freed")
    out["quota:prov1"] = _get(q, f"/v1/projects/{story.P1}/provenance")
    out["quota:prov2"] = _get(q, f"/v1/projects/{story.P2}/provenance")
    out["quota:release"] = _get(q, f"/v1/releases/{story.R2}")
    out["quota:request"] = _get(q, f"/v1/requests/{story.Q1}")
    out["quota:requests"] = _get(q, "/v1/requests", county_code=C)
    out["quota:policy"] = _get(q, f"/v1/counties/{C}/policy")
    out["quota:recon"] = _get(q, f"/v1/counties/{C}/reconciliation")
    out["settlement:statement"] = _get(s, f"/v1/counties/{C}/periods/{story.month}/statement", FINANCE, limit=1000)
    out["settlement:statement_paged"] = _get(s, f"/v1/counties/{C}/periods/{story.month}/statement", FINANCE, limit=3)
    out["settlement:periods"] = _get(s, f"/v1/counties/{C}/periods", FINANCE)
    out["settlement:comp"] = _get(s, f"/v1/enterprises/{story.E}/compensation", FINANCE, county=C)
    out["settlement:position"] = _get(s, f"/v1/counties/{C}/parties/enterprise:{story.E}/position", FINANCE)
    out["settlement:export"] = _get(s, f"/v1/counties/{C}/periods/{story.month}/statement/export", FINANCE,
                                    format="json")
    out["assessment:project"] = _get(a, f"/v1/projects/{story.P1}")
    runs = _get(a, "/v1/evaluations", county_code=C, year=2023)
    out["assessment:evals"] = runs
    run = (runs.get("runs") or runs.get("items") or [runs])[0] if isinstance(runs, dict) else runs[0]
    out["assessment:run_e"] = _get(a, f"/v1/evaluations/{run['run_id']}/enterprises/{story.E}")
    out["assessment:indicators"] = _get(a, f"/v1/enterprises/{story.E}/indicators/2023")
    for n, topic in (("quota", T.QUOTA_EVENTS), ("settlement", T.SETTLEMENT_EVENTS), ("ledger", T.LEDGER_EVENTS),
                     ("assessment", T.ASSESSMENT_EVENTS), ("quota_commands", T.LEDGER_COMMANDS),
                     ("settlement_commands", T.LEDGER_COMMANDS)):
        rt = services[n.split("_")[0]][0]
        out[f"{n}:events"] = [e for e in _outbox_envelopes(rt, topic) if C in json.dumps(e)]
    return out


def _post(client, path, body, headers=ADMIN):
    r = client.post(path, headers=headers, json=body)
    assert r.status_code == 200, f"POST {path}: {r.status_code} {r.text[:300]}"
    return r.json()


def _walk(obj, path=""):
    """(path, key, value, the dict holding it) for every leaf."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                yield from _walk(v, f"{path}.{k}")
            else:
                yield f"{path}.{k}", k, v, obj
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, (dict, list)):
                yield from _walk(v, f"{path}[{i}]")
            else:
                yield f"{path}[{i}]", None, v, obj


# -- 1. OpenAPI ---------------------------------------------------------------------------------------------------

def _number_fields(doc: dict) -> list[str]:
    found = []

    def walk(o, path):
        if isinstance(o, dict):
            t = o.get("type")
            if t == "number" or (isinstance(t, list) and "number" in t):
                found.append(path)
            for k, v in o.items():
                walk(v, f"{path}/{k}")
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, f"{path}[{i}]")
    walk(doc, "")
    return found


def test_openapi_documents_type_no_figure_as_a_float_number(services):
    """A finance system generates its client from the OpenAPI: a field typed `number` (anyOf number|string) tells it
    to send JSON floats, which are not exact (0.1 is 0.1000000000000000055...). The services themselves refuse a
    float there (assessment's ExactDecimal), so the document advertises what the service refuses. Reported by
    service / schema / field, for the committed documents and each running app's /openapi.json."""
    found = []
    for n in NAMES:
        committed = json.loads((ROOT / "docs" / "openapi" / f"{n}.json").read_text())
        live = services[n][1].get("/openapi.json").json()
        for where, doc in (("docs/openapi", committed), ("/openapi.json", live)):
            found += [f"{n} {where}: {p.replace('/components/schemas/', '').split('/anyOf')[0]}"
                      for p in _number_fields(doc)]
    money = [f for f in found if "surcharge" in f]
    assert not found, (f"DEFECT: {len(found)} request fields typed `number` in the OpenAPI documents (policy figures; "
                       f"the money ones: {money}):\n" + "\n".join(sorted(set(found))))


# -- 2. live bodies: no floats, each amount at its scale --------------------------------------------------------------

def test_no_json_float_in_any_response_or_event(bodies):
    """No JSON float anywhere a finance system reads: every figure a decimal string (ints only for counts/ids)."""
    floats = [(name, p, v) for name, body in bodies.items() for p, _, v, _ in _walk(body) if isinstance(v, float)]
    assert not floats, f"DEFECT: JSON floats in responses/events: {floats[:20]}"
    # figures are strings, never JSON ints, wherever an amount key stands
    ints = [(name, p, v) for name, body in bodies.items() for p, k, v, _ in _walk(body)
            if k in (QTY_KEYS | MONEY_KEYS) and isinstance(v, int) and not isinstance(v, bool)]
    assert not ints, f"DEFECT: amounts as JSON numbers: {ints[:20]}"


def test_every_amount_carries_its_assets_exact_scale(bodies):
    """README: amounts are decimal strings at the asset's scale (CNY 0.01, COD 0.0001, ENERGY 0.001): "12.30" not
    "12.3", in single items, lists, statements, balances and events alike."""
    bad, checked = [], 0
    for name, body in bodies.items():
        if name == "ledger:assets":
            continue
        for p, k, v, holder in _walk(body):
            if not isinstance(v, str) or not isinstance(holder, dict):
                continue
            asset = holder.get("asset")
            if k in QTY_KEYS and asset in SCALES:
                want = SCALES[asset]
            elif (k in MONEY_KEYS and not (k == "total" and not name.startswith("settlement"))) or (k == "amount" and "kind" in holder and "payer" in holder):
                want = 2
            elif name == "ledger:entries" and k in QTY_KEYS:
                want = 4  # the COD pool account's entries
            else:
                continue
            checked += 1
            try:
                Decimal(v)
            except Exception:
                bad.append((name, p, v, "not a decimal"))
                continue
            if _places(v) != want or v.strip() != v:
                bad.append((name, p, v, f"want {want} decimals"))
        # asset-keyed maps: quota's provenance totals and policy prices
    for name, key, want in (("quota:prov1", "totals", None), ("quota:prov2", "totals", None),
                            ("quota:policy", "prices", 2)):
        for asset, v in bodies[name][key].items():
            checked += 1
            if _places(v) != (want if want is not None else SCALES[asset]):
                bad.append((name, f"{key}.{asset}", v, "scale"))
    assert checked > 200, checked
    assert not bad, f"DEFECT: amounts not at their asset's scale: {bad[:30]}"


def test_ledger_assets_document_the_scales_the_readme_states(bodies):
    got = {a["code"]: a["scale"] for a in bodies["ledger:assets"]}
    assert got == SCALES, got


# -- 3. totals beside lines ---------------------------------------------------------------------------------------

def _d(v) -> Decimal:
    return Decimal(v)


def test_statement_totals_are_the_exact_sums_of_its_lines(bodies):
    """A finance system ties a statement's party totals and money_total out to its lines; the export and the
    SettlementDrafted/Finalized events carry the same figures."""
    for name in ("settlement:statement", "settlement:export"):
        doc = bodies[name]
        money = [ln for ln in doc["lines"] if ln["kind"] != "statistics_share"]
        assert len(doc["lines"]) == bodies["settlement:statement"]["line_count"], name
        rec, pay = {}, {}
        for ln in money:
            rec[ln["payee"]] = rec.get(ln["payee"], Decimal(0)) + _d(ln["amount"])
            pay[ln["payer"]] = pay.get(ln["payer"], Decimal(0)) + _d(ln["amount"])
        for t in doc["totals"]:
            p = t["party"]
            assert _d(t["receivable"]) == rec.get(p, 0) and _d(t["payable"]) == pay.get(p, 0), (name, t, rec, pay)
            assert _d(t["net"]) == _d(t["receivable"]) - _d(t["payable"]), (name, t)
        assert {t["party"] for t in doc["totals"]} == set(rec) | set(pay), name
        assert _d(doc["money_total"]) == sum(_d(ln["amount"]) for ln in money), (name, doc["money_total"])
        assert sum(_d(t["net"]) for t in doc["totals"]) == 0, name
    st = bodies["settlement:statement"]
    paged = bodies["settlement:statement_paged"]
    assert paged["totals"] == st["totals"] and paged["money_total"] == st["money_total"], \
        "DEFECT: a page of lines shows other totals than the whole statement"
    for e in bodies["settlement:events"]:
        if e["data"].get("statement_id") == st["statement_id"] and e["data"].get("content_hash") == st["content_hash"]:
            assert e["data"]["total"] == st["money_total"], e["data"]
            if "party_totals" in e["data"]:
                ev = {t["party"]: (t["receivable"], t["payable"]) for t in e["data"]["party_totals"]}
                assert ev == {t["party"]: (t["receivable"], t["payable"]) for t in st["totals"]}, ev
    periods = {x["period"]: x for x in bodies["settlement:periods"]["statements"]}
    assert periods[st["period"]]["money_total"] == st["money_total"]


def test_compensation_and_position_totals_are_the_sums_of_their_lines(bodies, story):
    comp = bodies["settlement:comp"]
    for status, key in (("draft", "draft_total"), ("finalized", "finalized_total")):
        lines = [ln for ln in comp["lines"] if ln["status"] == status]
        if comp.get(key) is not None and lines:
            assert _d(comp[key]) == sum(_d(ln["amount"]) for ln in lines), (key, comp)
    pos = bodies["settlement:position"]
    fin = [p for p in pos["periods"] if p["status"] == "finalized"]
    assert _d(pos["finalized_receivable"]) == sum(_d(p["receivable"]) for p in fin), pos
    assert _d(pos["finalized_payable"]) == sum(_d(p["payable"]) for p in fin), pos
    assert _d(pos["finalized_net"]) == sum(_d(p["net"]) for p in fin), pos
    st = {t["party"]: t for t in bodies["settlement:statement"]["totals"]}[f"enterprise:{story.E}"]
    month = {p["period"]: p for p in pos["periods"]}[story.month]
    assert (month["receivable"], month["payable"], month["net"]) == (st["receivable"], st["payable"], st["net"])


def test_ledger_balances_are_consistent_with_their_parts(bodies):
    """balance = credits_posted - debits_posted, available = balance - debits_pending (README), the same account
    reading the same in the single, list and query endpoints; its entries sum to its balance."""
    single = {b["account_id"]: b for b in (bodies["ledger:pool"], bodies["ledger:enterprise_cny"])}
    listed = {b["account_id"]: b for b in bodies["ledger:balances"]}
    queried = {b["account_id"]: b for b in (bodies["ledger:balances_query"].get("balances")
                                             if isinstance(bodies["ledger:balances_query"], dict)
                                             else bodies["ledger:balances_query"])}
    for src in (single, listed, queried):
        for b in src.values():
            assert _d(b["balance"]) == _d(b["credits_posted"]) - _d(b["debits_posted"]), b
            assert _d(b["available"]) == _d(b["balance"]) - _d(b["debits_pending"]), b
    for acc, b in single.items():
        for other in (listed, queried):
            if acc in other:
                assert {k: v for k, v in other[acc].items() if k != "as_of_seq"} == \
                       {k: v for k, v in b.items() if k != "as_of_seq"}, (acc, other[acc], b)
    entries = bodies["ledger:entries"]["entries"]
    assert bodies["ledger:entries"]["next_after_seq"] is None
    pool = bodies["ledger:pool"]
    for k in ("credits_posted", "debits_posted", "credits_pending", "debits_pending"):
        assert sum(_d(e[k]) for e in entries) == _d(pool[k]), (k, entries)


def test_quota_pool_lots_and_provenance_add_up(bodies):
    """The pool per asset is the sum of its lots; each lot's amount = retired + allocated + remaining; each
    allocation's amount and due are the sums of its lots' parts; provenance totals the sum of allocations."""
    lots = bodies["quota:lots"]["lots"]
    pool = {x["asset"]: x for x in bodies["quota:pool"]["assets"]}
    for asset, x in pool.items():
        mine = [lot for lot in lots if lot["asset"] == asset]
        for k in ("released", "retired", "allocated"):
            lk = "amount" if k == "released" else k
            assert _d(x[k]) == sum((_d(lot[lk]) for lot in mine), Decimal(0)), (asset, k, x, mine)
        assert _d(x["available"]) == _d(x["released"]) - _d(x["retired"]) - _d(x["allocated"]) - _d(x["reserved"]), x
    for lot in lots:
        assert _d(lot["amount"]) == _d(lot["retired"]) + _d(lot["allocated"]) + _d(lot["remaining"]), lot
    for name in ("quota:prov1", "quota:prov2"):
        prov = bodies[name]
        for al in prov["allocations"]:
            assert _d(al["amount"]) == sum(_d(c["amount"]) for c in al["lots"]), al
            assert _d(al["amount_due"]) == sum(_d(c["amount_due"]) for c in al["lots"]), al
        for asset, v in prov["totals"].items():
            assert _d(v) == sum(_d(al["amount"]) for al in prov["allocations"] if al["asset"] == asset), prov
    for lot in bodies["quota:freed"]["lots"]:
        assert _d(lot["amount"]) == _d(lot["retired"]) + _d(lot["remaining"]) + sum(
            _d(c["amount"]) for c in lot["went_to"]), lot


# -- 4. odd decimal strings at every door -----------------------------------------------------------------------------

ODD = ["1e3", "1E-2", "1_000", "+12", " 12 ", "NaN", "Infinity", "１２", ".5", "12.", "1,000", "١٢", "0x10", "12.3.4"]


def _outcome(r) -> tuple[str, str]:
    if r.status_code in (200, 201):
        return "accepted", ""
    assert r.status_code < 500, f"5xx {r.status_code}: {r.text[:300]}"
    body = r.json()
    assert 400 <= r.status_code < 500 and isinstance(body.get("reason"), str) and body["reason"], r.text
    return "refused", body["reason"]


class Doors:
    """One money/quantity field per service door; each call uses fresh ids, so a refusal changes nothing else."""

    def __init__(self, services, story):
        self.sv, self.st = services, story
        self.tag = uuid.uuid4().hex[:6]
        self.n = 0
        l = services["ledger"][1]
        self.debit, self.credit = f"external:dec02-{self.tag}/COD", f"county:{story.C}/dec02-{self.tag}/COD"
        r = l.post("/v1/accounts", headers=ADMIN, json={"accounts": [
            {"account_id": self.debit, "asset": "COD", "address": f"external:dec02-{self.tag}"},
            {"account_id": self.credit, "asset": "COD", "address": f"county:{story.C}/dec02-{self.tag}"}]})
        assert r.status_code == 200 and r.json()["ok"], r.text
        a = services["assessment"][1]
        self.default_policy = _get(a, f"/v1/policies/{story.C}/2030/default")["policy"]

    def _id(self) -> str:
        self.n += 1
        return f"dec02-{self.tag}-{self.n}"

    def ledger_transfer(self, v):
        l = self.sv["ledger"][1]
        tid = self._id()
        r = l.post("/v1/transfers", headers=ADMIN, json={"transfers": [{
            "transfer_id": tid, "debit_account": self.debit, "credit_account": self.credit, "asset": "COD",
            "amount": v, "code": "dec02.test"}]})
        if r.status_code == 200:
            res = r.json()["results"][0]["result"]
            if res not in ("ok", "exists"):
                return ("refused", res), None
            return ("accepted", ""), l.get(f"/v1/transfers/{tid}", headers=ADMIN).json()["amount"]
        return _outcome(r), None

    def quota_release(self, v):
        q, st = self.sv["quota"][1], self.st
        rid = self._id()
        r = q.post("/v1/releases", headers=ECOLOGY, json={
            "release_id": rid, "enterprise_credit_code": st.F, "township_code": st.T2, "county_code": st.C,
            "asset": "COD", "amount": v, "reason": "upgrade_savings", "basis": "free",
            "document_ref": "通环收〔2024〕99号", "released_on": "2024-06-01"})
        o = _outcome(r)
        return o, (r.json()["amount"] if o[0] == "accepted" else None)

    def quota_price(self, v):
        q = self.sv["quota"][1]
        county = f"9{self.tag[:5].translate(str.maketrans('abcdef', '123456'))}"
        r = q.put(f"/v1/counties/{county}/policy", headers=ADMIN, json={"prices": {"COD": v}})
        o = _outcome(r)
        return o, (r.json()["prices"]["COD"] if o[0] == "accepted" else None)

    def settlement_receipt(self, v):
        s, st = self.sv["settlement"][1], self.st
        r = s.post("/v1/tax-receipts", headers=ADMIN, json={
            "receipt_id": self._id(), "enterprise_credit_code": st.E, "month": "2023-06", "tax_kind": "VAT",
            "amount": v})
        o = _outcome(r)
        return o, (r.json()["amount"] if o[0] == "accepted" else None)

    def assessment_indicator(self, v):
        a, st = self.sv["assessment"][1], self.st
        year = 2010 + self.n % 10
        self.n += 1
        r = a.post("/v1/indicators", headers=ADMIN, json={"credit_code": st.E, "year": year,
                                                          "department": "tax", "fields": {"rnd": v}})
        o = _outcome(r)
        if o[0] != "accepted":
            return o, None
        got = _get(a, f"/v1/enterprises/{st.E}/indicators/{year}")
        return o, got["figures"]["rnd"]

    def assessment_policy_surcharge(self, v):
        a, st = self.sv["assessment"][1], self.st
        self.n += 1
        year = 2031 + self.n
        pol = copy.deepcopy(self.default_policy)
        cur = a.get(f"/v1/policies/{st.C}/{year}", headers=ADMIN)
        version = cur.json()["version"] + 1 if cur.status_code == 200 else 1
        pol["year"], pol["version"] = year, version
        pol["treatments"]["D"]["electricity_surcharge_yuan_per_kwh"] = v
        r = a.put(f"/v1/policies/{st.C}/{year}", headers=ADMIN, json={"policy": pol})
        o = _outcome(r)
        if o[0] != "accepted":
            o = (o[0], f"{o[1]}: {r.text[:300]}")
        return o, (r.json()["policy"]["policy"]["treatments"]["D"]["electricity_surcharge_yuan_per_kwh"]
                   if o[0] == "accepted" else None)

    def all(self):
        return {"ledger POST /v1/transfers amount": self.ledger_transfer,
                "quota POST /v1/releases amount": self.quota_release,
                "quota PUT /v1/counties/{c}/policy prices": self.quota_price,
                "settlement POST /v1/tax-receipts amount": self.settlement_receipt,
                "assessment POST /v1/indicators fields": self.assessment_indicator,
                "assessment PUT /v1/policies/{c}/{y} treatments surcharge": self.assessment_policy_surcharge}


@pytest.fixture(scope="module")
def odd_outcomes(services, story, finalized, bodies):
    doors = Doors(services, story)
    table = {}
    for door, call in doors.all().items():
        first = call("12")
        assert first[0][0] == "accepted", f"{door} refuses a plain '12': {first}"
        for v in ODD:
            table[(door, v)] = call(v)
    Path("/tmp/dec02").mkdir(exist_ok=True)
    Path("/tmp/dec02/odd.json").write_text(json.dumps({f"{d} | {v!r}": o for (d, v), o in table.items()},
                                                      ensure_ascii=False, indent=1))
    return table


def test_every_door_refuses_exponents_underscores_and_other_scripts(odd_outcomes):
    """shared/amounts.py: a figure must look like ASCII digits with one point; Decimal() alone also takes '1_000',
    '1e3', '١٢' and full-width digits, which the API's decimal strings refuse. Silently taken at one door, "1_000"
    is a thousand where every other door says invalid_request, and "1e3" a thousand where a person may have meant
    something else. Each must be a 4xx with a reason at every door."""
    must_refuse = ["1e3", "1E-2", "1_000", "NaN", "Infinity", "１２", "١٢", "1,000", "0x10", "12.3.4"]
    taken = [(door, v, stored) for (door, v), ((kind, _), stored) in odd_outcomes.items()
             if v in must_refuse and kind == "accepted"]
    assert not taken, ("DEFECT: undocumented number forms silently accepted (door, sent, stored): "
                       + "; ".join(f"{d} {v!r} -> {s!r}" for d, v, s in taken))


def test_the_same_string_is_treated_alike_by_every_service(odd_outcomes):
    """All four services must treat one string one way: accepted everywhere (with one meaning) or refused
    everywhere. Lists each string whose outcome differs between doors."""
    by_value = {}
    for (door, v), ((kind, reason), stored) in odd_outcomes.items():
        by_value.setdefault(v, {})[door] = kind if kind == "refused" else f"accepted as {stored!r}"
    differ = {v: doors for v, doors in by_value.items()
              if len({("refused" if o == "refused" else Decimal(o.split("'")[1])) for o in doors.values()}) > 1}
    assert not differ, "DEFECT: one decimal string, different outcomes per service:\n" + "\n".join(
        f"  {v!r}: {doors}" for v, doors in differ.items())


ZEROS = ["0", "-0", "0.0", "-0.00", " 0 ", "+0"]


def test_zero_in_any_spelling_is_refused_where_zero_is_not_allowed(services, story, finalized, bodies):
    """A transfer and a release must not be zero (README): every spelling of zero is refused with a reason,
    and nothing is recorded."""
    doors = Doors(services, story)
    got = {}
    for door, call in (("ledger transfer", doors.ledger_transfer), ("quota release", doors.quota_release)):
        for v in ZEROS:
            (kind, reason), stored = call(v)
            got[(door, v)] = (kind, reason, stored)
    accepted = {k: v for k, v in got.items() if v[0] == "accepted"}
    assert not accepted, f"DEFECT: zero accepted where it is not allowed: {accepted}"


def test_accepted_figures_are_answered_as_plain_decimal_strings(odd_outcomes):
    """Whatever a door accepts, it answers as a plain decimal string ('1000', never '1E+3'): a finance system
    parsing the answer with a decimal-string pattern (as the services' own DecimalStr) cannot read an exponent."""
    import re
    plain = re.compile(r"-?[0-9]+(\.[0-9]+)?")
    bad = [(door, v, stored) for (door, v), ((kind, _), stored) in odd_outcomes.items()
           if kind == "accepted" and not (isinstance(stored, str) and plain.fullmatch(stored))]
    assert not bad, "DEFECT: accepted figures answered in a non-plain form (door, sent, answered): " + "; ".join(
        f"{d} {v!r} -> {s!r}" for d, v, s in bad)
