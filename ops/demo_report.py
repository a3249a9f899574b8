"""What the demo shows: read back from the services' APIs after the year has settled (collect), then printed as
compact tables (render). Every figure comes from a service's API; the checks at the end tie them together:

- the pool per asset: available = released − retired − allocated − reserved, and the quota service's figures
  agree with the ledger's balances (reconciliation);
- every allocated unit traces back to lots (provenance: a project's lot consumptions add up to its allocation,
  and all projects' allocations add up to the pool's allocated);
- compensation follows those lots: each enterprise's compensation lines equal its share of the proceeds of the
  lots it freed under the county's settlement policy (recomputed here from the quota service's provenance);
- every statement's party nets sum to zero;
- the ledger: per asset, all balances (external accounts included) sum to zero; its journal verifies.
"""
from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Iterable

ASSETS = ("LAND", "ENERGY", "COD", "NH3N", "SO2", "NOX", "VOCS")
UNITS = {"LAND": "亩", "ENERGY": "tce", "COD": "t", "NH3N": "t", "SO2": "t", "NOX": "t", "VOCS": "t"}
LEDGER_PREFIXES = ("external:", "issuance:", "county:", "project:", "township:", "park:", "enterprise:")
D0 = Decimal(0)


def dec(s) -> Decimal:
    return Decimal(str(s)) if s not in (None, "") else D0


# -- collecting ----------------------------------------------------------------------------------------

def collect(demo) -> dict:
    f, api = demo.facts, demo.feeder
    C = f.county_code
    r: dict = {"county_code": C}

    ents = api.pages("assessment", "/v1/enterprises", "items", "after", "next_after", county_code=C, limit=1000)
    r["enterprises"] = {e["credit_code"]: e for e in ents}
    results = api.pages("assessment", f"/v1/evaluations/{f.run['run_id']}/enterprises", "items", "after", "next_after",
                        limit=1000)
    r["results"] = results

    r["lots"] = api.pages("quota", f"/v1/counties/{C}/lots", "lots", "after", "next_after", limit=1000)
    r["pool"] = api.get("quota", f"/v1/counties/{C}/pool")["assets"]
    r["reconciliation"] = api.get("quota", f"/v1/counties/{C}/reconciliation")
    r["requests"] = api.pages("quota", "/v1/requests", "requests", "after", "next_after", county_code=C, limit=1000)
    allocated_projects = sorted({q["project_id"] for q in r["requests"] if q["state"] == "allocated"})
    r["provenance"] = {p: api.get("quota", f"/v1/projects/{p}/provenance") for p in allocated_projects}

    r["statements"] = {}
    for period in f.statements:
        r["statements"][period] = statement(api, C, period)
    r["settlement_policy"] = api.get("settlement", f"/v1/counties/{C}/settlement-policy")

    r["ledger"] = ledger(api)
    r["dead_letters"] = demo.settler.observe()["dead"]
    r["checks"] = checks(r)
    r["checks_ok"] = all(ok for _, ok, _ in r["checks"])
    return r


def statement(api, county: str, period: str) -> dict:
    """Every line of one statement: a draft re-run between two pages (another content hash) starts the read again,
    so the lines never mix two drafts."""
    for _ in range(10):
        lines, after, page, first = [], 0, None, None
        while True:
            page = api.get("settlement", f"/v1/counties/{county}/periods/{period}/statement", after_line=after, limit=1000)
            if first is None:
                first = page["content_hash"]
            elif page["content_hash"] != first:
                break  # re-drafted meanwhile
            lines.extend(page["lines"])
            if page["next_after_line"] is None:
                break
            after = page["next_after_line"]
        if page["content_hash"] == first:
            break
    else:
        raise RuntimeError(f"statement {county}/{period} kept changing while it was read")
    summary = {k: v for k, v in page.items() if k not in ("lines", "totals", "statistics_totals")}
    return {"summary": summary, "totals": page["totals"], "lines": lines}


def ledger(api) -> dict:
    accounts = []
    for prefix in LEDGER_PREFIXES:
        accounts += api.get("ledger", "/v1/balances", address_prefix=prefix, limit=10000)
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for a in accounts:
        kind = a["address"].split(":", 1)[0]
        if kind == "county":
            kind = "county:" + a["address"].rsplit("/", 1)[-1]  # pool, retired, fund
        sums[a["asset"]][kind] += dec(a["balance"])
    verify = api.get("ledger", "/v1/journal/verify")
    return {"accounts": len(accounts), "sums": {k: dict(v) for k, v in sums.items()}, "verify": verify}


def freed_by_enterprise(consumption: dict) -> bool:
    """A lot an enterprise freed (the quota API says source_kind 'enterprise', its QuotaAllocated events 'release'),
    not land of a 增减挂钩 reclamation project."""
    return consumption["source_kind"] != "reclamation"


def expected_compensation(r: dict) -> dict[str, int]:
    """Each enterprise's share of the proceeds of its lots, recomputed from the quota service's provenance with
    the settlement domain's split (rounding rule 5) and the county's policy: fen per credit code."""
    from services.settlement.domain.proceeds import ConsumedLot, QuotaAllocation, SettlementPolicy, split_proceeds
    from services.settlement.intake import ALLOCATION_UNIT_SCALE
    from shared.amounts import parse_amount

    pol = r["settlement_policy"]
    policy = SettlementPolicy(policy_id=pol["policy_id"], version=pol["version"], county=pol["county_code"],
                              compensation_bp=pol["compensation_bp"], township_weight=pol["township_weight"],
                              park_weight=pol["park_weight"], fund_weight=pol["fund_weight"])
    out: dict[str, int] = defaultdict(int)
    for project, prov in r["provenance"].items():
        for a in prov["allocations"]:
            lots = tuple(ConsumedLot(c["lot_id"], c["source_ref"] if freed_by_enterprise(c) else None,
                                     f"township:{c['township_code']}", parse_amount(c["amount"], ALLOCATION_UNIT_SCALE))
                         for c in a["lots"])
            alloc = QuotaAllocation(
                allocation_id=f"{a['request_id']}:{a['asset']}", project_id=project, asset=a["asset"],
                amount_units=sum(x.units for x in lots), price=a["price_per_unit"],
                amount_due_fen=parse_amount(a["amount_due"], 2, allow_zero=True),
                destination=None, lots=lots, allocated_on=date.today(),  # neither matters for compensation
                received_at=datetime.now(timezone.utc))
            for code, fen in split_proceeds(alloc, policy).compensation.items():
                out[code] += fen
    return dict(out)


def checks(r: dict) -> list[tuple[str, bool, str]]:
    out = []
    bad = []
    for a in r["pool"]:
        rel, ret, alloc, res, avail = (dec(a[k]) for k in ("released", "retired", "allocated", "reserved", "available"))
        if rel - ret - alloc - res != avail:
            bad.append(a["asset"])
    out.append(("pool: available = released − retired − allocated − reserved, per asset", not bad,
                f"differs for {bad}" if bad else f"{len(r['pool'])} assets"))
    rec = r["reconciliation"]
    out.append(("pool agrees with the ledger (reconciliation)", rec["agrees"] and rec["in_flight"] == 0,
                f"{len(rec['differences'])} differences, {rec['in_flight']} in flight"
                + (f": {rec['differences']}" if rec["differences"] else "")))

    prov_total: dict[str, Decimal] = defaultdict(Decimal)
    lot_mismatch = 0
    for prov in r["provenance"].values():
        for a in prov["allocations"]:
            if sum(dec(c["amount"]) for c in a["lots"]) != dec(a["amount"]):
                lot_mismatch += 1
            prov_total[a["asset"]] += dec(a["amount"])
    pool_alloc = {a["asset"]: dec(a["allocated"]) for a in r["pool"]}
    alloc_bad = [x for x in ASSETS if prov_total.get(x, D0) != pool_alloc.get(x, D0)]
    out.append(("provenance: lot consumptions add up to each allocation and to the pool's allocated",
                lot_mismatch == 0 and not alloc_bad,
                f"{sum(len(p['allocations']) for p in r['provenance'].values())} allocations of "
                f"{len(r['provenance'])} projects" + (f"; mismatch {lot_mismatch} / {alloc_bad}" if lot_mismatch or alloc_bad else "")))

    paid: dict[str, int] = defaultdict(int)
    for st in r["statements"].values():
        for ln in st["lines"]:
            if ln["kind"] == "compensation":
                paid[ln["payee"].removeprefix("enterprise:")] += int(dec(ln["amount"]) * 100)
    want = expected_compensation(r)
    diff = {k for k in set(paid) | set(want) if paid.get(k, 0) != want.get(k, 0)}
    out.append(("compensation per enterprise = its lots' share of the proceeds under the policy", not diff,
                f"{len(want)} enterprises, {Decimal(sum(want.values())) / 100:,.2f} 元" + (f"; differs for {len(diff)}" if diff else "")))

    for period, st in r["statements"].items():
        net = sum(dec(t["net"]) for t in st["totals"])
        out.append((f"statement {period} ({st['summary']['status']}): party nets sum to zero", net == 0,
                    f"{len(st['totals'])} parties, {len(st['lines'])} lines, sum of nets {net}"))

    sums = r["ledger"]["sums"]
    unbalanced = {a: sum(v.values()) for a, v in sums.items() if sum(v.values()) != 0}
    out.append(("ledger: per asset, all balances sum to zero", not unbalanced,
                f"{r['ledger']['accounts']} accounts, {len(sums)} assets" + (f"; off: {unbalanced}" if unbalanced else "")))
    v = r["ledger"]["verify"]
    out.append(("ledger journal hash chain verifies", v["ok"], f"{v['checked']} entries, head {v['head_seq']}"
                + ("" if v["ok"] else f", broken at {v['first_broken_seq']}: {v['reason']}")))
    return out


# -- rendering ---------------------------------------------------------------------------------------

def _w(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _pad(s: str, n: int, right: bool) -> str:
    gap = " " * max(0, n - _w(s))
    return gap + s if right else s + gap


def table(headers: list[str], rows: Iterable[list], left: int = 1) -> str:
    rows = [[("" if x is None else str(x)) for x in row] for row in rows]
    ws = [max([_w(h)] + [_w(row[i]) for row in rows]) for i, h in enumerate(headers)]
    out = ["  " + "  ".join(_pad(h, ws[i], i >= left) for i, h in enumerate(headers)),
           "  " + "  ".join("─" * w for w in ws)]
    for row in rows:
        out.append("  " + "  ".join(_pad(x, ws[i], i >= left) for i, x in enumerate(row)))
    return "\n".join(out)


def cny(x) -> str:
    return f"{dec(x):,.2f}"


def qty(x) -> str:
    d = dec(x)
    return "" if d == 0 else f"{d.normalize():f}" if d == d.to_integral() else f"{d:f}".rstrip("0")


def section(title: str) -> str:
    return f"\n■ {title}"


def short_name(name: str, n: int = 10) -> str:
    for prefix in ("南通",):
        name = name.removeprefix(prefix)
    for suffix in ("股份有限公司", "科技有限公司", "有限公司"):
        name = name.removesuffix(suffix)
    return name if _w(name) <= 2 * n else name[:n] + "…"


def render(demo, r: dict, max_rows: int = 20) -> str:
    f = demo.facts
    C = r["county_code"]
    towns = f.townships
    names = {c: e["name"] for c, e in r["enterprises"].items()}
    out = [f"\n{'═' * 100}\n{f.county_name} ({C}) — operating year {f.year}, indicators of {f.data_year}\n{'═' * 100}"]

    # classes ---------------------------------------------------------------------------------------
    by_class: dict[str, Counter] = defaultdict(Counter)
    for x in r["results"]:
        by_class[x["class_label"]][x["recommendation"]] += 1
    out.append(section(f"Classes of the {f.data_year} evaluation (run {f.run['run_id']}, policy v{f.run['policy_version']})"))
    rows = [[k, sum(v.values()), v["close"], v["relocate"], v["upgrade"], v["none"]] for k, v in sorted(by_class.items())]
    rows.append(["all", len(r["results"]), *(sum(v[d] for v in by_class.values()) for d in ("close", "relocate", "upgrade", "none"))])
    out.append(table(["class", "enterprises", "→ close", "→ relocate", "→ upgrade", "→ none"], rows))
    if f.run.get("without_data"):
        out.append(f"  {f.run['without_data']} registered enterprises had no {f.data_year} figures (not evaluated)")

    # dispositions ----------------------------------------------------------------------------------
    out.append(section("Dispositions (县政府 decisions, carried out → EnterpriseExited / EnterpriseRelocated)"))
    rec = Counter(x["recommendation"] for x in r["results"])
    dec_ = Counter(d["decided"] for d in f.decisions)
    over = Counter(d["decided"] for d in f.decisions if d["overridden"])
    done = Counter(x["decided"] for x in f.executions if x["status"] == "executed")
    rows = [[k, rec[k], dec_[k], over[k], done[k]] for k in ("close", "relocate", "upgrade")]
    out.append(table(["disposition", "recommended", "decided", "of which overrides", "carried out"], rows))
    moved = Counter(x["to_park_id"] for x in f.executions if x.get("to_park_id"))
    if moved:
        out.append("  relocated into: " + ", ".join(f"{f.parks.get(p, p)} ({p}) {n}" for p, n in sorted(moved.items())))

    # freed per township ----------------------------------------------------------------------------
    out.append(section("Freed quota per township (lots booked into the county pool)"))
    freed: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    nlots: Counter = Counter()
    reclaimed = D0
    for lot in r["lots"]:
        freed[lot["township_code"]][lot["asset"]] += dec(lot["amount"])
        nlots[lot["township_code"]] += 1
        if lot["source_kind"] == "reclamation":
            reclaimed += dec(lot["amount"])
    rows = []
    for t in sorted(freed):
        rows.append([f"{towns.get(t, '')} {t}", nlots[t], *(qty(freed[t][a]) for a in ASSETS)])
    rows.append(["county", sum(nlots.values()), *(qty(sum(freed[t][a] for t in freed)) for a in ASSETS)])
    out.append(table(["township", "lots", *(f"{a} {UNITS[a]}" for a in ASSETS)], rows))
    if reclaimed:
        out.append(f"  LAND includes {qty(reclaimed)} 亩 from accepted 增减挂钩 reclamation projects")

    # pool --------------------------------------------------------------------------------------------
    out.append(section("The county pool per asset"))
    rows = [[a["asset"], a["unit"], qty(a["released"]) or "0", qty(a["retired"]) or "0", qty(a["allocated"]) or "0",
             qty(a["reserved"]) or "0", qty(a["available"]) or "0"] for a in r["pool"]]
    out.append(table(["asset", "unit", "released", "retired", "allocated", "reserved", "available"], rows, left=2))
    states = Counter(q["state"] for q in r["requests"])
    out.append("  requests: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
               + f"; rounds: {len(f.rounds)} (" + ", ".join(
                   f"#{x['seq']} {Counter(d['outcome'] for d in x['decisions']).get('granted', 0)}/{len(x['decisions'])} granted"
                   for x in f.rounds) + ")")
    adm = Counter((bool(a["admitted"]), tuple(x["code"] for x in a["failures"])) for _, a, _ in f.projects)
    refused = Counter(fl for (ok, fails), n in adm.items() if not ok for fl in fails for _ in range(n))
    out.append(f"  admission: {len(f.projects)} applications, {sum(n for (ok, _), n in adm.items() if ok)} admitted; refused for "
               + ", ".join(f"{k} {v}" for k, v in refused.most_common()))
    unexpected = [(b["project_id"], e["scenario"], [x["code"] for x in a["failures"]]) for b, a, e in f.projects
                  if e is not None and bool(a["admitted"]) != bool(e["admitted"])]
    if unexpected:
        out.append(f"  the assessment decided {len(unexpected)} applications otherwise than the generator expected: "
                   + "; ".join(f"{p} ({sc}) → {', '.join(fl) or 'admitted'}" for p, sc, fl in unexpected[:5])
                   + (" …" if len(unexpected) > 5 else ""))
    door = [(rid, reason) for _, _, refused_, _, _ in f.months for rid, reason in refused_]
    if door:
        out.append(f"  {len(door)} quota requests refused on arrival: " + ", ".join(
            f"{k} {v}" for k, v in Counter(reason for _, reason in door).most_common()))

    # projects ----------------------------------------------------------------------------------------
    out.append(section("What each new project received, and from whose lots"))
    parks = {b["project_id"]: b.get("park_id") for b, _, _ in f.projects}
    rows = []
    prov_items = sorted(r["provenance"].items(), key=lambda kv: -sum(dec(a["amount_due"]) for a in kv[1]["allocations"]))
    used = [a for a in ASSETS if any(dec(p["totals"].get(a)) for _, p in prov_items)]
    for p, prov in prov_items:
        due = sum(dec(a["amount_due"]) for a in prov["allocations"])
        lots = [c for a in prov["allocations"] for c in a["lots"]]
        by_src = Counter()
        for c in lots:
            by_src[c["source_ref"] if freed_by_enterprise(c) else "增减挂钩"] += dec(c["amount_due"])
        top = [s if s == "增减挂钩" else short_name(names.get(s, s), 5) for s, _ in by_src.most_common(2)]
        more = len(by_src) - len(top)
        rows.append([p, parks.get(p) or "", *(qty(prov["totals"].get(a)) for a in used), cny(due), len(lots),
                     ", ".join(top) + (f" +{more}" if more > 0 else "")])
    shown = rows[:max_rows]
    out.append(table(["project", "park", *(f"{a} {UNITS[a]}" for a in used), "due 元", "lots", "from (largest first)"],
                     shown, left=2))
    if len(rows) > max_rows:
        out.append(f"  … {len(rows) - max_rows} more projects (GET /v1/projects/<id>/provenance)")
    if prov_items:
        p, prov = prov_items[-1] if len(prov_items) > 1 else prov_items[0]
        out.append(f"  e.g. {p}:")
        for a in prov["allocations"]:
            for c in a["lots"]:
                src = c["source_ref"]
                who = f"{names.get(src, src)} ({src})" if freed_by_enterprise(c) else f"增减挂钩 {src}"
                out.append(f"    {a['asset']:<6} {qty(c['amount']):>10} {UNITS.get(a['asset'], '')} from {c['lot_id']}: {who}, "
                           f"{towns.get(c['township_code'], c['township_code'])}, {cny(c['amount_due'])} 元")

    # settlement --------------------------------------------------------------------------------------
    pol = r["settlement_policy"]
    for period, st in r["statements"].items():
        s = st["summary"]
        label = "finalized, posted to the ledger" if s["status"] == "finalized" else "draft: the period has not ended"
        out.append(section(f"Settlement statement {C}/{period} ({label})"))
        pst = s.get("postings")
        posting = (f", ledger postings: {pst['posted']} posted, {pst['rejected']} rejected, {pst['requested']} unanswered"
                   if pst else "")
        out.append(f"  {s['line_count']} lines, money {cny(s['money_total'])} 元, hash {s['content_hash'][:16]}…{posting}; "
                   f"policy {pol['policy_id']} v{pol['version']}")
        kinds: dict[str, list] = defaultdict(lambda: [0, D0])
        for ln in st["lines"]:
            kinds[ln["kind"]][0] += 1
            kinds[ln["kind"]][1] += dec(ln["amount"])
        out.append(table(["line kind", "lines", "元"], [[k, n, cny(v)] for k, (n, v) in kinds.items()]))
        groups: dict[str, list] = defaultdict(list)
        for t in st["totals"]:
            groups[t["party"].split(":", 1)[0]].append(t)
        rows = []
        for kind in ("township", "park", "county"):
            for t in sorted(groups.pop(kind, []), key=lambda t: t["party"]):
                code = t["party"].split(":", 1)[1]
                label_ = towns.get(code) or f.parks.get(code) or ("county fund" if kind == "county" else "")
                rows.append([t["party"], label_, cny(t["receivable"]), cny(t["payable"]), cny(t["net"])])
        for kind, ts in sorted(groups.items()):  # enterprises and projects: many, summed
            rows.append([f"{kind}: {len(ts)} parties", "(summed)", cny(sum(dec(t["receivable"]) for t in ts)),
                         cny(sum(dec(t["payable"]) for t in ts)), cny(sum(dec(t["net"]) for t in ts))])
        rows.append(["all parties", "", cny(sum(dec(t["receivable"]) for t in st["totals"])),
                     cny(sum(dec(t["payable"]) for t in st["totals"])), cny(sum(dec(t["net"]) for t in st["totals"]))])
        out.append(table(["party", "", "receivable 元", "payable 元", "net 元"], rows, left=2))

    # compensation ------------------------------------------------------------------------------------
    comp: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for st in r["statements"].values():
        for ln in st["lines"]:
            if ln["kind"] in ("compensation", "buyback"):
                comp[ln["payee"].removeprefix("enterprise:")][ln["kind"]] += dec(ln["amount"])
    out.append(section("Compensation per enterprise (腾退补偿 from the proceeds of its lots; 收储 buy-backs)"))
    if comp:
        exited = {d["credit_code"]: d["decided"] for d in f.decisions}
        rows = sorted(([c, short_name(names.get(c, ""), 12), exited.get(c, ""), cny(v["compensation"]), cny(v["buyback"]),
                        cny(v["compensation"] + v["buyback"])] for c, v in comp.items()), key=lambda x: -dec(x[5].replace(",", "")))
        total = [sum(v[k] for v in comp.values()) for k in ("compensation", "buyback")]
        shown = rows[:max_rows] + [[f"{len(rows)} enterprises", "", "", cny(total[0]), cny(total[1]), cny(sum(total))]]
        out.append(table(["enterprise", "name", "exit", "compensation 元", "buy-back 元", "total 元"], shown, left=3))
        if len(rows) > max_rows:
            out.append(f"  … {len(rows) - max_rows} more (GET /v1/enterprises/<code>/compensation)")
    else:
        out.append("  none: no quota was allocated in a settled period")

    # ledger ------------------------------------------------------------------------------------------
    lg = r["ledger"]
    v = lg["verify"]
    out.append(section("The ledger (book of record)"))
    out.append(f"  journal: {'verifies' if v['ok'] else 'BROKEN at ' + str(v['first_broken_seq']) + ': ' + v['reason']}"
               f" — {v['checked']} hash-chained entries, head {v['head_seq']}; {lg['accounts']} accounts")
    kinds_ = sorted({k for s in lg["sums"].values() for k in s})
    rows = [[a, *(qty(lg["sums"][a].get(k, D0)) or "0" if k in lg["sums"][a] else "" for k in kinds_),
             qty(sum(lg["sums"][a].values())) or "0"] for a in sorted(lg["sums"], key=lambda a: (a == "CNY", a))]
    out.append(table(["asset", *kinds_, "sum"], rows))

    # checks ------------------------------------------------------------------------------------------
    out.append(section("Checks"))
    for name, ok, detail in r["checks"]:
        out.append(f"  {'✓' if ok else '✗'} {name}: {detail}")
    if r["dead_letters"]:
        out.append("  dead letters: " + ", ".join(f"{k} {n}" for k, n in sorted(r["dead_letters"].items())))
    else:
        out.append("  no message was dead-lettered")

    # how long ----------------------------------------------------------------------------------------
    secs = r.get("seconds", {})
    out.append(section("Timings"))
    out.append("  " + "; ".join(f"{n.split(':')[0].split(' (')[0]} {t:.1f}s" for n, t in f.timings))
    out.append(f"  fed and settled in {secs.get('feed', 0):.1f}s (of which waiting for the platform to settle "
               f"{demo.settler.waited:.1f}s), read back in {secs.get('collect', 0):.1f}s; "
               f"{sum(f.published.values())} events published, {demo.feeder.http_calls} HTTP calls")
    return "\n".join(out)
