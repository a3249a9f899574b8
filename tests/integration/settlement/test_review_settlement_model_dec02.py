"""Review (dec02): a seeded random walk over ONE running settlement service (PostgreSQL, HTTP API), against a plain
reference model of what the revenue shares should be.

The model knows the agreements (ratios 6:4, 5:5, 4:6 and ratios that do not sum to 10, several years, stepping
schedules, either remainder party), the receipts (instalments, corrections down to zero, amounts up to the one-trillion
yuan figure limit) and the finalizations, and computes each statement's lines by the README / ``domain/rounding.py``
rules 1, 2, 6, 7: per agreement, tax kind and month ``local = floor(total * bp / 10000)``, the origin's part of that by
the agreement year's weights, the remainder to ``remainder_to``; a late month as the difference of recomputed shares.

After each step the walk checks: lines and amounts exact to the fen, sources, ``unmatched_receipts``, party totals and
nets (summing to zero), money_total; a re-run gives the same hash; one more receipt changes exactly its month's line;
every refused call (4xx) leaves the full read-API snapshot as it was; every repeated call with the same id changes
nothing. Deterministic (fixed seeds), well under a minute.
"""
from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from tests.integration.settlement.support import FINANCE, OFFICE, TAX
from tests.support.services import running_service

TODAY_MONTH = (2026, 12)  # the date of this review run: periods from 2027 are "in the future"
MAX_FIGURE_FEN = 10**14  # one trillion yuan: the README's largest single figure
CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


# -- plain helpers (independent of the product's own Period / rounding code) ------------------------------------

def mi(y: int, m: int) -> int:
    return y * 12 + (m - 1)


def label_of(i: int) -> str:
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def month_end_day(i: int) -> int:
    y, m = i // 12, i % 12 + 1
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def period_range(label: str) -> tuple[int, int]:
    if len(label) == 4:
        y = int(label)
        return mi(y, 1), mi(y, 12)
    if "Q" in label:
        y, q = int(label[:4]), int(label[-1])
        return mi(y, 3 * q - 2), mi(y, 3 * q)
    i = mi(int(label[:4]), int(label[5:7]))
    return i, i


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def fen(text: str) -> int:
    d = Decimal(text) * 100
    assert d == d.to_integral_value(), text
    return int(d)


TODAY = mi(*TODAY_MONTH)


# -- the reference model -----------------------------------------------------------------------------------------

@dataclass
class Agreement:
    aid: str
    enterprise: str
    origin: str
    destination: str
    taxes: dict[str, int]
    schedule: list[tuple[int, int | None, int, int]]  # from_year, to_year, origin w, destination w
    start: int  # month index
    end: int  # month index
    remainder_to: str  # "origin" | "destination"

    def body(self, county: str) -> dict:
        return {
            "agreement_id": self.aid, "county_code": county, "enterprise_credit_code": self.enterprise,
            "origin": self.origin, "destination": self.destination,
            "taxes": [{"tax_kind": k, "local_share_bp": bp} for k, bp in self.taxes.items()],
            "schedule": [{"from_year": a, "to_year": b, "origin_weight": o, "destination_weight": d}
                         for a, b, o, d in self.schedule],
            "start": f"{label_of(self.start)}-01", "end": f"{label_of(self.end)}-{month_end_day(self.end):02d}",
            "remainder_to": self.remainder_to,
        }

    def covers(self, month: int, kind: str) -> bool:
        return self.start <= month <= self.end and kind in self.taxes

    def origin_share(self, kind: str, month: int, total: int) -> int:
        local = total * self.taxes[kind] // 10_000
        year = (month - self.start) // 12 + 1
        wo, wd = next((o, d) for a, b, o, d in self.schedule if a <= year and (b is None or year <= b))
        if self.remainder_to == "origin":
            return local - local * wd // (wo + wd)
        return local * wo // (wo + wd)


@dataclass
class Receipt:
    rid: str
    enterprise: str
    month: int
    kind: str  # as recorded (VAT / CIT)
    amount: int
    corrects: str | None
    replaced: int | None
    epoch: int  # finalizations before it was received
    sent_kind: str = ""  # as sent (may be 增值税)
    corrected_by: str | None = None

    @property
    def delta(self) -> int:
        return self.amount - (self.replaced or 0)

    def body(self) -> dict:
        b = {"receipt_id": self.rid, "enterprise_credit_code": self.enterprise, "month": label_of(self.month),
             "tax_kind": self.sent_kind or self.kind, "amount": yuan(self.amount)}
        if self.corrects:
            b["corrects"] = self.corrects
        return b


@dataclass
class Model:
    county: str
    agreements: dict[str, Agreement] = field(default_factory=dict)
    receipts: dict[str, Receipt] = field(default_factory=dict)
    enterprises: list[str] = field(default_factory=list)
    closed: list[tuple[str, int, int]] = field(default_factory=list)  # (label, first, last)
    settled: dict[tuple[str, str, int], tuple[int, int]] = field(default_factory=dict)  # -> (tax, origin share)

    @property
    def epoch(self) -> int:
        return len(self.closed)

    def resolve(self, enterprise: str, kind: str, month: int) -> Agreement | None:
        found = [a for a in self.agreements.values() if a.enterprise == enterprise and a.covers(month, kind)]
        assert len(found) <= 1, f"model: overlapping agreements {found}"
        return found[0] if found else None

    def overlaps(self, new: Agreement) -> bool:
        return any(a.enterprise == new.enterprise and set(a.taxes) & set(new.taxes)
                   and not (a.end < new.start or new.end < a.start) for a in self.agreements.values())

    def period_allowed(self, label: str) -> bool:
        first, _ = period_range(label)
        if first > TODAY:
            return False
        return not self.closed or first == self.closed[-1][2] + 1

    def statement(self, label: str) -> dict:
        """Expected lines (kind, payer, payee, amount, agreement, tax kind, month) -> sources, and unmatched."""
        first, last = period_range(label)
        groups: dict[tuple[str, str, int], list[Receipt]] = defaultdict(list)
        for r in self.receipts.values():
            if r.month > last:
                continue
            if self.closed and not (r.month >= first or r.epoch == self.epoch):
                continue  # an earlier month settled before the last cut-off
            groups[(r.enterprise, r.kind, r.month)].append(r)
        lines: dict[tuple, tuple[str, ...]] = {}
        unmatched = 0
        settled_now: dict[tuple[str, str, int], tuple[int, int]] = {}
        for (ent, kind, month), rs in groups.items():
            a = self.resolve(ent, kind, month)
            if a is None:
                unmatched += len(rs)
                continue
            prior_tax, prior_share = self.settled.get((a.aid, kind, month), (0, 0))
            total = prior_tax + sum(r.delta for r in rs)
            assert total >= 0
            share = a.origin_share(kind, month, total)
            settled_now[(a.aid, kind, month)] = (total, share)
            diff = share - prior_share
            if diff == 0:
                continue
            line_kind = "revenue_share" if month >= first else "adjustment"
            payer, payee = (a.destination, a.origin) if diff > 0 else (a.origin, a.destination)
            key = (line_kind, payer, payee, abs(diff), a.aid, kind, label_of(month))
            assert key not in lines
            lines[key] = tuple(sorted(r.rid for r in rs))
        return {"lines": lines, "unmatched": unmatched, "settled": settled_now}


# -- reading the service -----------------------------------------------------------------------------------------

def read_statement(api, county: str, label: str) -> dict | None:
    r = api.get(f"/v1/counties/{county}/periods/{label}/statement", headers=FINANCE, params={"limit": 1000})
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    page = r.json()
    lines = list(page["lines"])
    while page["next_after_line"] is not None:
        page2 = api.get(f"/v1/counties/{county}/periods/{label}/statement", headers=FINANCE,
                        params={"limit": 1000, "after_line": page["next_after_line"]}).json()
        assert page2["content_hash"] == page["content_hash"]
        lines.extend(page2["lines"])
        page = {**page, "next_after_line": page2["next_after_line"]}
    page["lines"] = lines
    return page


def snapshot(api, m: Model) -> dict:
    """Everything the read API says about the county: agreements, receipts, periods, statements, positions."""
    C = m.county
    out: dict = {}
    out["agreements"] = api.get("/v1/agreements", headers=FINANCE, params={"county": C, "limit": 500}).json()
    receipts, after = [], ""
    while True:
        page = api.get("/v1/tax-receipts", headers=FINANCE, params={"after": after, "limit": 1000}).json()
        receipts.extend(page["receipts"])
        if page["next_after"] is None:
            break
        after = page["next_after"]
    out["receipts"] = receipts
    periods = api.get(f"/v1/counties/{C}/periods", headers=FINANCE).json()
    out["periods"] = periods
    out["statements"] = {s["period"]: read_statement(api, C, s["period"]) for s in periods["statements"]}
    parties = sorted({p for a in m.agreements.values() for p in (a.origin, a.destination)})
    out["positions"] = {p: api.get(f"/v1/counties/{C}/parties/{p}/position", headers=FINANCE).json() for p in parties}
    out["policy"] = api.get(f"/v1/counties/{C}/settlement-policy/versions", headers=FINANCE).json()
    return out


def assert_refused_and_unchanged(api, m: Model, before: dict, response, what: str, statuses=(409, 422, 404)):
    assert response.status_code in statuses, (
        f"{what}: expected a refusal {statuses}, got {response.status_code} {response.text[:400]}")
    after = snapshot(api, m)
    assert after == before, f"DEFECT: refused call ({what}, {response.status_code}) changed the read API: " + \
        _first_difference(before, after)


def _first_difference(a, b, path="") -> str:
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}/{k}: only on one side"
            if a[k] != b[k]:
                return _first_difference(a[k], b[k], f"{path}/{k}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {a!r} != {b!r}"


def check_statement(api, m: Model, label: str, expected: dict, status: str) -> dict:
    page = read_statement(api, m.county, label)
    assert page is not None, f"no statement {label}"
    assert page["status"] == status, (label, page["status"])
    got: dict[tuple, tuple] = {}
    for ln in page["lines"]:
        key = (ln["kind"], ln["payer"], ln["payee"], fen(ln["amount"]), ln["agreement_id"], ln["tax_kind"], ln["month"])
        assert key not in got, f"{label}: two lines {key}"
        assert ln["source_count"] == len(ln["sources"]), ln
        got[key] = tuple(sorted(ln["sources"]))
    want = expected["lines"]
    missing = {k: v for k, v in want.items() if k not in got}
    extra = {k: v for k, v in got.items() if k not in want}
    assert not missing and not extra, (
        f"DEFECT: statement {label} lines differ from the model (rounding rules 1/2/6/7):\n"
        f" missing (model) {sorted(missing)[:6]}\n extra (service) {sorted(extra)[:6]}")
    for k, v in want.items():
        assert got[k] == v, f"DEFECT: {label} line {k} cites {got[k]}, the model's receipts are {v}"
    assert page["line_count"] == len(want) == len(page["lines"]), (page["line_count"], len(want))
    assert page["unmatched_receipts"] == expected["unmatched"], (
        f"DEFECT: {label} unmatched_receipts {page['unmatched_receipts']} != model {expected['unmatched']}")
    # party totals and nets from the lines; nets sum to zero
    rec: dict[str, int] = defaultdict(int)
    pay: dict[str, int] = defaultdict(int)
    for (_, payer, payee, amount, *_rest) in want:
        rec[payee] += amount
        pay[payer] += amount
    totals = {t["party"]: (fen(t["receivable"]), fen(t["payable"]), fen(t["net"])) for t in page["totals"]}
    want_totals = {p: (rec[p], pay[p], rec[p] - pay[p]) for p in set(rec) | set(pay)}
    assert {p: v for p, v in totals.items() if v != (0, 0, 0)} == want_totals, (
        f"DEFECT: {label} party totals {totals} != {want_totals}")
    assert sum(v[2] for v in totals.values()) == 0, f"DEFECT: {label} nets do not sum to zero: {totals}"
    assert fen(page["money_total"]) == sum(k[3] for k in want), (page["money_total"], sum(k[3] for k in want))
    return page


# -- the walk ----------------------------------------------------------------------------------------------------

RATIOS = [(6, 4), (5, 5), (4, 6), (7, 3), (3, 7), (1, 2), (2, 1), (7, 5), (1, 0), (0, 1), (13, 7), (1, 1)]
SHARES = [5000, 4000, 5000, 3333, 1, 9999, 10000, 0, 2500]


def credit(rng: random.Random, county: str, n: int) -> str:
    return f"91{county}{''.join(rng.choice(CHARSET) for _ in range(8))}{n:02d}"[:18]


class Walk:
    def __init__(self, api, rng: random.Random, county: str):
        self.api, self.rng = api, rng
        self.m = Model(county)
        self.n_agreements = 0
        self.n_receipts = 0
        self.drafts: dict[str, str] = {}  # label -> content hash of the last draft the walk made (since a cut-off)
        self.checks = defaultdict(int)

    # -- agreements
    def random_agreement(self, enterprise: str | None = None) -> Agreement:
        rng, C = self.rng, self.m.county
        self.n_agreements += 1
        lo = mi(2023, 1) if not self.m.closed else self.m.closed[-1][2] + 1
        start = rng.randint(lo, max(lo, mi(2026, 9)))
        length = rng.choice([1, 6, 12, 13, 24, 25, 36, 60])
        end = start + length - 1
        years = (end - start) // 12 + 1
        steps, y = [], 1
        while y <= years:
            last = rng.randint(y, years)
            o, d = rng.choice(RATIOS)
            steps.append([y, last, o, d])
            y = last + 1
        if rng.random() < 0.5:
            steps[-1][1] = None
        kinds = rng.choice([["VAT"], ["CIT"], ["VAT", "CIT"]])
        origin = f"township:{C}{rng.randint(101, 104)}"
        dest = rng.choice([f"park:P{C}-{rng.randint(1, 3)}", f"township:{C}{rng.randint(105, 106)}"])
        return Agreement(aid=f"FD-{C}-{self.n_agreements:03d}", enterprise=enterprise or rng.choice(self.m.enterprises),
                         origin=origin, destination=dest, taxes={k: rng.choice(SHARES) for k in kinds},
                         schedule=[tuple(s) for s in steps], start=start, end=end,
                         remainder_to=rng.choice(["origin", "destination"]))

    def add_agreement(self, a: Agreement | None = None) -> None:
        a = a or self.random_agreement()
        closed_end = self.m.closed[-1][2] if self.m.closed else -1
        before = snapshot(self.api, self.m)
        r = self.api.post("/v1/agreements", headers=OFFICE, json=a.body(self.m.county))
        if self.m.overlaps(a) or a.start <= closed_end:
            assert_refused_and_unchanged(self.api, self.m, before, r, f"overlapping agreement {a.aid}", (409,))
            self.checks["agreement_refused"] += 1
            return
        assert r.status_code == 201, f"agreement {a.body(self.m.county)} refused: {r.status_code} {r.text}"
        self.m.agreements[a.aid] = a
        self.checks["agreement"] += 1
        # the same version again: 200, created false, nothing changed
        before = snapshot(self.api, self.m)
        r2 = self.api.post("/v1/agreements", headers=OFFICE, json=a.body(self.m.county))
        assert r2.status_code == 200 and r2.json()["created"] is False, r2.text
        after = snapshot(self.api, self.m)
        assert after == before, "DEFECT: re-sending an identical agreement changed the read API: " + \
            _first_difference(before, after)

    def bad_agreement(self) -> None:
        a = self.random_agreement()
        body = a.body(self.m.county)
        how = self.rng.choice(["start_not_first", "end_not_last", "end_before_start", "zero_weights", "short_schedule",
                               "same_parties", "share_over_100", "remainder_bogus"])
        if how == "start_not_first":
            body["start"] = body["start"][:8] + "02"
        elif how == "end_not_last":
            body["end"] = body["end"][:8] + "01" if not body["end"].endswith("01") else body["end"][:8] + "02"
        elif how == "end_before_start":
            body["end"] = f"{label_of(a.start - 1)}-{month_end_day(a.start - 1):02d}"
        elif how == "zero_weights":
            body["schedule"][0]["origin_weight"] = body["schedule"][0]["destination_weight"] = 0
        elif how == "short_schedule":
            body["end"] = f"{label_of(a.start + 12 * 7 - 1)}-{month_end_day(a.start + 12 * 7 - 1):02d}"
            body["schedule"] = [{"from_year": 1, "to_year": 2, "origin_weight": 6, "destination_weight": 4}]
        elif how == "same_parties":
            body["destination"] = body["origin"]
        elif how == "share_over_100":
            body["taxes"][0]["local_share_bp"] = 10_001
        else:
            body["remainder_to"] = "county"
        before = snapshot(self.api, self.m)
        r = self.api.post("/v1/agreements", headers=OFFICE, json=body)
        assert_refused_and_unchanged(self.api, self.m, before, r, f"bad agreement ({how})", (422,))
        self.checks["agreement_invalid"] += 1

    # -- receipts
    def receipt_month(self, enterprise: str) -> int:
        rng = self.rng
        mine = [a for a in self.m.agreements.values() if a.enterprise == enterprise]
        if mine and rng.random() < 0.85:
            a = rng.choice(mine)
            cands = [a.start, a.end, a.start + 11, a.start + 12, a.start - 1, a.end + 1,
                     rng.randint(a.start, a.end)]
            month = rng.choice(cands)
        else:
            month = rng.randint(mi(2022, 12), TODAY)
        return max(mi(2022, 1), min(TODAY, month))

    def amount(self) -> int:
        rng = self.rng
        x = rng.random()
        if x < 0.1:
            return MAX_FIGURE_FEN - rng.randint(0, 3)
        if x < 0.2:
            return rng.randint(1, 99)
        if x < 0.3:
            return rng.randint(10**11, 10**13)
        return rng.randint(100, 10**9)

    def post_receipt(self, r: Receipt) -> dict:
        resp = self.api.post("/v1/tax-receipts", headers=TAX, json=r.body())
        assert resp.status_code == 201, f"receipt {r.body()} refused: {resp.status_code} {resp.text}"
        body = resp.json()
        assert body["created"] is True and body["tax_kind"] == r.kind and fen(body["amount"]) == r.amount, body
        if r.corrects:
            assert fen(body["replaced_amount"]) == r.replaced, body
        self.m.receipts[r.rid] = r
        if r.corrects:
            self.m.receipts[r.corrects].corrected_by = r.rid
        return body

    def new_receipt(self, *, month: int | None = None, enterprise: str | None = None, amount: int | None = None) -> Receipt:
        rng = self.rng
        self.n_receipts += 1
        ent = enterprise or rng.choice(self.m.enterprises)
        kind = rng.choice(["VAT", "VAT", "CIT"])
        sent = "增值税" if kind == "VAT" and rng.random() < 0.2 else kind
        r = Receipt(rid=f"R-{self.m.county}-{self.n_receipts:05d}", enterprise=ent,
                    month=month if month is not None else self.receipt_month(ent), kind=kind,
                    amount=amount if amount is not None else self.amount(), corrects=None, replaced=None,
                    epoch=self.m.epoch, sent_kind=sent)
        self.post_receipt(r)
        self.checks["receipt"] += 1
        self.maybe_resend(r)
        return r

    def correction(self) -> None:
        heads = [r for r in self.m.receipts.values() if r.corrected_by is None]
        if not heads:
            return
        target = self.rng.choice(heads)
        self.n_receipts += 1
        amount = self.rng.choice([0, target.amount // 2, target.amount + self.rng.randint(1, 10**6),
                                  self.rng.randint(1, 10**8)])
        amount = min(amount, MAX_FIGURE_FEN)
        r = Receipt(rid=f"R-{self.m.county}-{self.n_receipts:05d}", enterprise=target.enterprise, month=target.month,
                    kind=target.kind, amount=amount, corrects=target.rid, replaced=target.amount, epoch=self.m.epoch)
        self.post_receipt(r)
        self.checks["correction"] += 1
        self.maybe_resend(r)

    def maybe_resend(self, r: Receipt) -> None:
        if self.rng.random() > 0.25:
            return
        before = snapshot(self.api, self.m)
        resp = self.api.post("/v1/tax-receipts", headers=TAX, json=r.body())
        assert resp.status_code == 200 and resp.json()["created"] is False, \
            f"DEFECT: re-sent receipt {r.rid} not idempotent: {resp.status_code} {resp.text}"
        after = snapshot(self.api, self.m)
        assert after == before, f"DEFECT: re-sending receipt {r.rid} changed the read API: " + \
            _first_difference(before, after)
        self.checks["resend"] += 1

    def bad_receipt(self) -> None:
        rng, m = self.rng, self.m
        ent = rng.choice(m.enterprises)
        self.n_receipts += 1
        body = {"receipt_id": f"R-{m.county}-{self.n_receipts:05d}", "enterprise_credit_code": ent,
                "month": label_of(self.receipt_month(ent)), "tax_kind": "VAT", "amount": "100.00"}
        heads = [r for r in m.receipts.values() if r.corrected_by is None]
        done = [r for r in m.receipts.values() if r.corrected_by is not None]
        how = rng.choice(["future", "negative", "zero", "implausible", "three_decimals", "unknown_enterprise",
                          "id_conflict", "already_corrected", "correction_other_kind", "correction_unknown",
                          "bad_kind"])
        statuses: tuple = (409, 422)
        if how == "future":
            body["month"] = label_of(TODAY + 1)
        elif how == "negative":
            body["amount"] = "-5.00"
        elif how == "zero":
            body["amount"] = "0.00"
        elif how == "implausible":
            body["amount"] = yuan(MAX_FIGURE_FEN + 1)
        elif how == "three_decimals":
            body["amount"] = "10.005"
        elif how == "unknown_enterprise":
            body["enterprise_credit_code"] = credit(rng, m.county, 99)
        elif how == "id_conflict" and m.receipts:
            old = rng.choice(list(m.receipts.values()))
            body = {**old.body(), "amount": yuan(old.amount + 1)}
        elif how == "already_corrected" and done:
            old = rng.choice(done)
            body.update(enterprise_credit_code=old.enterprise, month=label_of(old.month), tax_kind=old.kind,
                        corrects=old.rid)
        elif how == "correction_other_kind" and heads:
            old = rng.choice(heads)
            body.update(enterprise_credit_code=old.enterprise, month=label_of(old.month),
                        tax_kind="CIT" if old.kind == "VAT" else "VAT", corrects=old.rid)
        elif how == "correction_unknown":
            body["corrects"] = f"R-{m.county}-NOPE"
        elif how == "bad_kind":
            body["tax_kind"] = "印花税"
        else:
            body["amount"] = "-1"
        before = snapshot(self.api, m)
        resp = self.api.post("/v1/tax-receipts", headers=TAX, json=body)
        assert_refused_and_unchanged(self.api, m, before, resp, f"bad receipt ({how})", statuses)
        self.checks["receipt_refused"] += 1

    # -- statements
    def allowed_periods(self) -> list[str]:
        out = []
        for y in (2023, 2024, 2025, 2026):
            out.append(str(y))
            out += [f"{y}-Q{q}" for q in range(1, 5)]
            out += [f"{y}-{mm:02d}" for mm in range(1, 13)]
        return [p for p in out if self.m.period_allowed(p)]

    def draft(self, label: str | None = None) -> dict:
        label = label or self.rng.choice(self.allowed_periods())
        r = self.api.post(f"/v1/counties/{self.m.county}/periods/{label}/draft", headers=OFFICE)
        assert r.status_code == 200, f"draft {label}: {r.status_code} {r.text}"
        summary = r.json()
        page = check_statement(self.api, self.m, label, self.m.statement(label), "draft")
        assert page["content_hash"] == summary["content_hash"]
        # re-run over the same inputs: the same hash and lines
        r2 = self.api.post(f"/v1/counties/{self.m.county}/periods/{label}/draft", headers=OFFICE)
        assert r2.status_code == 200, r2.text
        assert r2.json()["content_hash"] == summary["content_hash"], \
            f"DEFECT: re-running draft {label} over the same inputs changed the content hash"
        self.drafts[label] = summary["content_hash"]
        self.checks["draft"] += 1
        return page

    def draft_then_one_more(self) -> None:
        """A statement after one more receipt differs exactly by that receipt's month line."""
        label = self.rng.choice(self.allowed_periods())
        first, last = period_range(label)
        page1 = self.draft(label)
        candidates = [a for a in self.m.agreements.values() if a.start <= min(last, TODAY) and a.end >= first]
        if not candidates:
            return
        a = self.rng.choice(candidates)
        month = self.rng.randint(max(first, a.start), min(last, a.end, TODAY))
        kind = self.rng.choice(list(a.taxes))
        groups = [r for r in self.m.receipts.values() if (r.enterprise, r.kind, r.month) == (a.enterprise, kind, month)]
        old_total = sum(r.delta for r in groups)
        self.n_receipts += 1
        amount = self.amount()
        r = Receipt(rid=f"R-{self.m.county}-{self.n_receipts:05d}", enterprise=a.enterprise, month=month, kind=kind,
                    amount=amount, corrects=None, replaced=None, epoch=self.m.epoch)
        self.post_receipt(r)
        page2 = self.draft(label)
        assert page2["content_hash"] != page1["content_hash"] or \
            a.origin_share(kind, month, old_total) == a.origin_share(kind, month, old_total + amount)

        def keyed(page):
            return {(ln["agreement_id"], ln["tax_kind"], ln["month"], ln["kind"]): (ln["payer"], ln["payee"],
                                                                                     fen(ln["amount"]))
                    for ln in page["lines"]}

        k1, k2 = keyed(page1), keyed(page2)
        changed = {k for k in set(k1) | set(k2) if k1.get(k) != k2.get(k)}
        assert changed <= {(a.aid, kind, label_of(month), "revenue_share")}, (
            f"DEFECT: one more receipt ({a.aid} {kind} {label_of(month)}) changed other lines: {sorted(changed)}")
        self.checks["one_more"] += 1

    def finalize(self, label: str) -> None:
        m = self.m
        expected = m.statement(label)
        r = self.api.post(f"/v1/counties/{m.county}/periods/{label}/finalize", headers=OFFICE)
        assert r.status_code == 200, f"finalize {label}: {r.status_code} {r.text}"
        check_statement(self.api, m, label, expected, "finalized")
        first, last = period_range(label)
        m.closed.append((label, first, last))
        m.settled.update(expected["settled"])
        self.drafts.clear()
        periods = self.api.get(f"/v1/counties/{m.county}/periods", headers=FINANCE).json()
        drafts_left = [s["period"] for s in periods["statements"] if s["status"] == "draft"]
        assert not drafts_left, f"DEFECT: drafts computed before the cut-off survive finalization: {drafts_left}"
        # finalizing again answers the finalized statement and changes nothing
        before = snapshot(self.api, m)
        r2 = self.api.post(f"/v1/counties/{m.county}/periods/{label}/finalize", headers=OFFICE)
        assert r2.status_code == 200 and r2.json()["content_hash"] == r.json()["content_hash"], r2.text
        after = snapshot(self.api, m)
        assert after == before, "DEFECT: finalizing twice changed the read API: " + _first_difference(before, after)
        self.checks["finalize"] += 1

    def bad_statement_call(self) -> None:
        m = self.m
        options = [("draft", label_of(TODAY + 1)), ("draft", "2027"), ("finalize", label_of(TODAY)),
                   ("finalize", "2026-Q4"), ("finalize", "2026")]
        if m.closed:
            _, f, last = m.closed[-1]
            options += [("draft", label_of(f)), ("draft", label_of(last + 2)), ("finalize", label_of(last + 2)),
                        ("draft", str((last + 13) // 12 - 1) if (last + 1) % 12 else label_of(last))]
        action, label = self.rng.choice(options)
        if action == "draft" and m.period_allowed(label):
            return
        before = snapshot(self.api, m)
        r = self.api.post(f"/v1/counties/{m.county}/periods/{label}/{action}", headers=OFFICE)
        assert_refused_and_unchanged(self.api, m, before, r, f"{action} {label}")
        self.checks["statement_refused"] += 1


def _run_walk(api, seed: int, county: str, steps: int, finalize_at: dict[int, str]) -> Walk:
    rng = random.Random(seed)
    w = Walk(api, rng, county)
    r = api.put(f"/v1/counties/{county}/settlement-policy", headers=OFFICE,
                json={"compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3})
    assert r.status_code == 200, r.text
    w.m.enterprises = [credit(rng, county, n) for n in range(1, 6)]
    for e in w.m.enterprises:
        w.add_agreement(w.random_agreement(e))
    for step in range(steps):
        if step in finalize_at and w.m.period_allowed(finalize_at[step]):
            w.finalize(finalize_at[step])
            continue
        x = rng.random()
        if x < 0.35:
            w.new_receipt()
        elif x < 0.45:
            w.correction()
        elif x < 0.53:
            w.add_agreement()
        elif x < 0.58:
            w.bad_agreement()
        elif x < 0.68:
            w.bad_receipt()
        elif x < 0.84:
            w.draft()
        elif x < 0.92:
            w.draft_then_one_more()
        else:
            w.bad_statement_call()
    return w


@pytest.mark.parametrize("seed,finalize_at", [(20261202, {30: "2025", 55: "2026-Q1"}),
                                              (99, {20: "2024-Q4", 35: "2025-01", 50: "2025-02"})])
def test_settlement_model_walk(pg_url, kafka_bootstrap, seed, finalize_at):
    county = f"{random.Random(seed).randint(1, 9)}{random.Random(seed + 1).randint(0, 99999):05d}"
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (_, api):
        w = _run_walk(api, seed, county, steps=65, finalize_at=finalize_at)
    assert w.checks["draft"] >= 5 and w.checks["receipt"] >= 10 and w.checks["finalize"] == len(finalize_at), dict(w.checks)



# -- compensation (腾退补偿) and proceeds shares over the Kafka intake ------------------------------------------------

def expected_proceeds(alloc: dict, policy: dict, county: str) -> dict[tuple, int]:
    """Rounding rule 5, written out from the README: (kind, payer, payee, allocation id) -> fen."""
    due = fen(alloc["amount_due"])
    units = lambda a: int(Decimal(a) * 10**6)  # noqa: E731
    total_units = units(alloc["amount"])
    per_ent: dict[str, int] = defaultdict(int)
    per_town: dict[str, int] = defaultdict(int)
    for lot in alloc["lots"]:
        u = units(lot["amount"])
        if lot["source_kind"] == "release" and lot.get("earns_compensation", True):
            per_ent[lot["source_ref"]] += u
        per_town[f"township:{lot['township_code']}"] += u
    compensable_units = sum(per_ent.values())
    compensable = due * compensable_units // total_units if compensable_units < total_units else due
    comp_total = compensable * policy["compensation_bp"] // 10_000
    out: dict[tuple, int] = {}
    payer = f"project:{alloc['project_id']}"
    aid = f"{alloc['request_id']}:{alloc['asset']}"
    if per_ent:
        parts = {e: comp_total * u // compensable_units for e, u in per_ent.items()}
        biggest = min(per_ent, key=lambda e: (-per_ent[e], e))
        parts[biggest] += comp_total - sum(parts.values())
        for e, v in parts.items():
            if v:
                out[("compensation", payer, f"enterprise:{e}", aid)] = v
    fund = f"county:{county}/fund"
    weights: dict[str, int] = {t: policy["township_weight"] * u for t, u in per_town.items()}
    park = f"park:{alloc['park_id']}" if alloc.get("park_id") else fund
    weights[park] = weights.get(park, 0) + policy["park_weight"] * total_units
    weights[fund] = weights.get(fund, 0) + policy["fund_weight"] * total_units
    rest = due - comp_total
    wsum = sum(weights.values())
    shares = {p: rest * w // wsum for p, w in weights.items()}
    shares[fund] += rest - sum(shares.values())
    for p, v in shares.items():
        if v:
            out[("proceeds_share", payer, p, aid)] = v
    return out


def test_compensation_model_over_kafka(pg_url, kafka_bootstrap):
    from datetime import date

    from sqlalchemy import func, select

    from services.settlement.storage import tables as t
    from shared.contracts import topics
    from shared.contracts.quota import ConsumedLotOut, QuotaAllocated
    from tests.integration.settlement.support import isolated_service, publish
    from tests.support.services import wait_for

    rng = random.Random(20261203)
    C = f"{rng.randint(1, 9)}{rng.randint(0, 99999):05d}"
    policy = {"compensation_bp": 3333, "township_weight": 4, "park_weight": 3, "fund_weight": 2}
    ents = sorted(credit(rng, C, n) for n in range(1, 5))
    allocs: list[dict] = []
    for n in range(14):
        lots = []
        for k in range(rng.randint(1, 4)):
            kind = rng.choice(["release", "release", "release", "reclamation"])
            amt = rng.choice(["1.0000", "2.0000", "3.0000", "0.0001", "7.1234", "2.0000"])
            lots.append({"lot_id": f"L{n}-{k}-{C}", "source_kind": kind,
                         "source_ref": rng.choice(ents) if kind == "release" else f"RECL-{C}-{k}",
                         "township_code": f"{C}{rng.randint(101, 103)}", "amount": amt, "amount_due": "0.00",
                         "earns_compensation": rng.random() > 0.15})
        total = sum(Decimal(lot["amount"]) for lot in lots)
        due = rng.choice([MAX_FIGURE_FEN, MAX_FIGURE_FEN - 7, 1, 99, rng.randint(100, 10**10), rng.randint(100, 10**12)])
        allocs.append({"request_id": f"REQ-{C}-{n:02d}", "project_id": f"PRJ-{C}-{n % 5}", "county_code": C,
                       "asset": rng.choice(["LAND", "ENERGY"]), "amount": f"{total:.4f}", "price_per_unit": "1.00",
                       "amount_due": yuan(due), "park_id": rng.choice([f"P{C}", f"P{C}-2", None]),
                       "allocated_on": date(2026, rng.randint(1, 11), rng.choice([1, 15, 28])).isoformat(),
                       "lots": lots})
    with isolated_service("settlement", pg_url, kafka_bootstrap) as (runtime, api):
        assert api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json=policy).status_code == 200
        for a in allocs:
            ev = QuotaAllocated(**{**a, "lots": [ConsumedLotOut(**lot) for lot in a["lots"]],
                                   "allocated_on": date.fromisoformat(a["allocated_on"])})
            eid = publish(kafka_bootstrap, topics.QUOTA_EVENTS, ev, subject=a["request_id"], source="/countypool/quota")
            if a is allocs[0]:  # the same event again and the same allocation under another event id
                publish(kafka_bootstrap, topics.QUOTA_EVENTS, ev, subject=a["request_id"], source="/countypool/quota",
                        event_id=eid)
                publish(kafka_bootstrap, topics.QUOTA_EVENTS, ev, subject=a["request_id"], source="/countypool/quota")
        # an implausible amount due is dead-lettered: it must leave nothing
        bad = {**allocs[1], "request_id": f"REQ-{C}-BAD", "amount_due": yuan(MAX_FIGURE_FEN + 1)}
        publish(kafka_bootstrap, topics.QUOTA_EVENTS,
                QuotaAllocated(**{**bad, "lots": [ConsumedLotOut(**lot) for lot in bad["lots"]],
                                  "allocated_on": date.fromisoformat(bad["allocated_on"])}),
                subject=bad["request_id"], source="/countypool/quota")
        marker = {**allocs[2], "request_id": f"REQ-{C}-LAST", "lots": [{**allocs[2]["lots"][0], "lot_id": f"LZ-{C}"}],
                  "amount": allocs[2]["lots"][0]["amount"]}
        allocs.append(marker)
        publish(kafka_bootstrap, topics.QUOTA_EVENTS,
                QuotaAllocated(**{**marker, "lots": [ConsumedLotOut(**lot) for lot in marker["lots"]],
                                  "allocated_on": date.fromisoformat(marker["allocated_on"])}),
                subject=marker["request_id"], source="/countypool/quota")

        def consumed():
            with runtime.db.sessions() as s:
                return s.execute(select(func.count()).select_from(t.quota_allocations)
                                 .where(t.quota_allocations.c.county_code == C)).scalar() == len(allocs)
        wait_for(consumed, timeout=40, what="allocations consumed")
        time.sleep(1.0)  # the bad one is behind the marker on another partition, maybe: give it a moment

        want: dict[tuple, int] = {}
        for a in allocs:
            want.update(expected_proceeds(a, policy, C))
        for label in ("2026", "2026-Q2", "2026-07"):
            r = api.post(f"/v1/counties/{C}/periods/{label}/draft", headers=OFFICE)
            assert r.status_code == 200, r.text
            page = read_statement(api, C, label)
            first, last = period_range(label)
            exp = {k: v for k, v in want.items()
                   if mi(*map(int, next(a for a in allocs
                                        if f"{a['request_id']}:{a['asset']}" == k[3])["allocated_on"][:7].split("-")))
                   <= last}
            got: dict[tuple, int] = {}
            for ln in page["lines"]:
                key = (ln["kind"], ln["payer"], ln["payee"], ln["allocation_id"])
                assert key not in got, f"two lines {key}"
                got[key] = fen(ln["amount"])
            diff = {k: (exp.get(k), got.get(k)) for k in set(exp) | set(got) if exp.get(k) != got.get(k)}
            assert not diff, f"DEFECT: {label} proceeds/compensation lines differ from rule 5 (model, service): " + \
                str(sorted(diff.items())[:6])
            nets = [fen(x["net"]) for x in page["totals"]]
            assert sum(nets) == 0, f"DEFECT: {label} nets do not sum to zero"
            # the whole amount due of each allocation reaches parties
            for a in allocs:
                aid = f"{a['request_id']}:{a['asset']}"
                if any(k[3] == aid for k in exp):
                    assert sum(v for k, v in got.items() if k[3] == aid) == fen(a["amount_due"]), aid
        # an enterprise's compensation: the latest draft counts each allocation once
        for e in ents:
            body = api.get(f"/v1/enterprises/{e}/compensation", headers=FINANCE).json()
            total = sum(v for k, v in want.items() if k[0] == "compensation" and k[2] == f"enterprise:{e}")
            assert fen(body["draft_total"]) == total, (
                f"DEFECT: compensation draft_total of {e} is {body['draft_total']}, model {yuan(total)}")


# -- China time at the month boundary, and overlaps across counties ---------------------------------------------

def test_china_time_month_boundary_for_receipts_and_finalize(pg_url, kafka_bootstrap, monkeypatch):
    """2026-11-30 16:30 UTC is 2026-12-01 00:30 in China: December has started (its receipts are taken) and
    November has ended (it can be finalized); one second before 16:00 UTC neither holds."""
    from datetime import datetime, timezone

    from services.settlement import clock

    rng = random.Random(5)
    C = f"{rng.randint(1, 9)}{rng.randint(0, 99999):05d}"
    E = credit(rng, C, 1)
    a = Agreement(aid=f"FD-{C}-T", enterprise=E, origin=f"township:{C}101", destination=f"park:P{C}",
                  taxes={"VAT": 5000}, schedule=[(1, None, 6, 4)], start=mi(2025, 12), end=mi(2026, 12),
                  remainder_to="origin")
    moment = {"now": datetime(2026, 11, 30, 15, 59, 59, tzinfo=timezone.utc)}
    monkeypatch.setattr(clock, "now", lambda: moment["now"].astimezone(clock.CST))
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (_, api):
        api.app.state.statement_runs.now = lambda: moment["now"].astimezone(clock.CST)
        assert api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE,
                       json={"compensation_bp": 3000, "township_weight": 4, "park_weight": 3,
                             "fund_weight": 3}).status_code == 200
        assert api.post("/v1/agreements", headers=OFFICE, json=a.body(C)).status_code == 201
        for rid, month, amt in (("S", mi(2025, 12), 12345), ("N", mi(2026, 11), 100001)):
            assert api.post("/v1/tax-receipts", headers=TAX, json={
                "receipt_id": f"{rid}-{C}", "enterprise_credit_code": E, "month": label_of(month), "tax_kind": "VAT",
                "amount": yuan(amt)}).status_code == 201
        dec = {"receipt_id": f"D-{C}", "enterprise_credit_code": E, "month": "2026-12", "tax_kind": "VAT",
               "amount": "777.77"}
        r = api.post("/v1/tax-receipts", headers=TAX, json=dec)
        assert r.status_code == 422 and r.json()["reason"] == "period_in_future", r.text
        r = api.post(f"/v1/counties/{C}/periods/2025-12/finalize", headers=OFFICE)
        assert r.status_code == 200, r.text
        r = api.post(f"/v1/counties/{C}/periods/2026-11/finalize", headers=OFFICE)
        assert r.status_code == 409, f"2026-11 finalized at 23:59:59 China time on its last day: {r.text}"
        moment["now"] = datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc)
        r = api.post("/v1/tax-receipts", headers=TAX, json=dec)
        assert r.status_code == 201, f"a December receipt refused at 00:30 on 1 December, China time: {r.text}"
        # 2026-01 .. 2026-11 closes in one go? No: periods close in order, a month after 2025-12 is next
        r = api.post(f"/v1/counties/{C}/periods/2026-01/finalize", headers=OFFICE)
        assert r.status_code == 200, r.text
        m = Model(C, agreements={a.aid: a})
        m.receipts = {
            f"S-{C}": Receipt(f"S-{C}", E, mi(2025, 12), "VAT", 12345, None, None, 0),
            f"N-{C}": Receipt(f"N-{C}", E, mi(2026, 11), "VAT", 100001, None, None, 0),
            f"D-{C}": Receipt(f"D-{C}", E, mi(2026, 12), "VAT", 77777, None, None, 1)}
        m.closed = [("2025-12", mi(2025, 12), mi(2025, 12)), ("2026-01", mi(2026, 1), mi(2026, 1))]
        m.settled = {(a.aid, "VAT", mi(2025, 12)): (12345, a.origin_share("VAT", mi(2025, 12), 12345))}
        r = api.post(f"/v1/counties/{C}/periods/2026-Q1/draft", headers=OFFICE)
        assert r.status_code == 409, r.text  # overlaps the closed 2026-01
        moment["now"] = datetime(2026, 11, 30, 16, 31, tzinfo=timezone.utc)
        r = api.post(f"/v1/counties/{C}/periods/2026-02/draft", headers=OFFICE)
        assert r.status_code == 200, r.text
        check_statement(api, m, "2026-02", m.statement("2026-02"), "draft")
        # the end month (December) of the agreement: its receipt is shared (agreement year 2: 6:4 still)
        assert a.origin_share("VAT", mi(2026, 12), 77777) == 77777 * 5000 // 10000 - (77777 * 5000 // 10000) * 4 // 10


def test_overlapping_agreements_for_one_enterprise_across_counties(pg_url, kafka_bootstrap):
    rng = random.Random(11)
    C1 = f"{rng.randint(1, 4)}{rng.randint(0, 99999):05d}"
    C2 = f"{rng.randint(5, 9)}{rng.randint(0, 99999):05d}"
    E = credit(rng, C1, 1)

    def agreement(aid, county, start, end, taxes):
        return Agreement(aid=aid, enterprise=E, origin=f"township:{county}101", destination=f"park:P{county}",
                         taxes=taxes, schedule=[(1, None, 6, 4)], start=start, end=end,
                         remainder_to="destination").body(county)

    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (_, api):
        assert api.post("/v1/agreements", headers=OFFICE,
                        json=agreement(f"A-{C1}", C1, mi(2025, 1), mi(2026, 12), {"VAT": 5000})).status_code == 201
        before = {c: api.get("/v1/agreements", headers=FINANCE, params={"county": c}).json() for c in (C1, C2)}
        for start, end in ((mi(2026, 12), mi(2027, 12)), (mi(2024, 1), mi(2025, 1)), (mi(2025, 6), mi(2025, 6))):
            r = api.post("/v1/agreements", headers=OFFICE,
                         json=agreement(f"B-{C2}-{start}", C2, start, end, {"VAT": 4000, "CIT": 4000}))
            assert r.status_code == 409 and r.json()["reason"] == "overlapping_agreements", (start, end, r.text)
            after = {c: api.get("/v1/agreements", headers=FINANCE, params={"county": c}).json() for c in (C1, C2)}
            assert after == before, "DEFECT: a refused overlapping agreement changed the agreements"
        for aid, start, end, taxes in ((f"C-{C2}", mi(2025, 1), mi(2026, 12), {"CIT": 4000}),
                                       (f"D-{C2}", mi(2027, 1), mi(2027, 12), {"VAT": 4000}),
                                       (f"E-{C2}", mi(2024, 1), mi(2024, 12), {"VAT": 4000})):
            r = api.post("/v1/agreements", headers=OFFICE, json=agreement(aid, C2, start, end, taxes))
            assert r.status_code == 201, (aid, r.text)
