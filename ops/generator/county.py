"""The generator: a county (or a province of counties) made row by row from a seed.

Every enterprise is a pure function of (seed, county, index): its latent quality is a stratified
quantile inside its county (an affine permutation of the indices), so the county has exactly the
intended share of weak enterprises without a global pass, and any row can be made alone. The
per-county extras (reclamation, projects, quota requests, approvals, agreements, tax receipts) need
a few numbers from the county's enterprises (what was released, who relocated): they are computed
from one pass over that county, or handed over by a writer that already made that pass.
"""
from __future__ import annotations

import bisect
import math
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import Iterator

from services.assessment.domain.credit_code import CHARSET, make_credit_code

from .geography import HOME_COUNTY, County, make_counties
from .industries import BY_CODE, CUMULATIVE, INDUSTRIES, PROJECT_INDUSTRIES, Industry
from .model import (
    ADMISSION_INVESTMENT_FEN_PER_MU, ADMISSION_TAX_FEN_PER_MU, APPROVAL_DEPARTMENT, APPROVAL_OF_ASSET,
    ASSET_DEPARTMENT, ASSET_UNIT, ASSETS, DEFAULT_PRICES_FEN, LOCAL_SHARES_BP, Agreement,
    Approval, CountySummary, EnterpriseRecord, Price, Project, QuotaRequest, Reclamation, Release, RequestLine,
    ScheduleStep, TaxReceipt,
)
from .rng import AffinePermutation, clamp, lognormal, rng, z_of_quantile
from .sizes import SIZES, Size

CST = timezone(timedelta(hours=8))
_ORG_SPACE = 31**9
_SYL = "宝昌晨诚大德鼎东丰富港广海瀚和恒弘宏华汇吉佳嘉江金锦景骏凯康乐力联隆龙茂美明南宁平启庆仁荣瑞润森盛世顺泰天通伟文祥新鑫兴旭亚阳耀永友裕元远悦云泽长振正中卓"
_SUFFIX = (("有限公司", 0.82), ("股份有限公司", 0.10), ("科技有限公司", 0.08))
_INVESTOR_REGIONS = ("310115", "320505", "320583", "330282", "320600", "320211")
_DEPT_DOC = {"ecology": "环收储", "development_reform": "发改能收", "natural_resources": "自然资收"}
_APPROVAL_DOC = {"environmental_impact": "环审", "energy_review": "发改能审", "land_use": "自然资用地"}
# Project scenarios: the first ones of each county in this order (so a tiny county shows each), then drawn.
PROJECT_PATTERN = ("ok", "below_investment", "ok", "two_high", "below_tax", "ok", "exact_threshold",
                   "outside_park", "ok", "below_both", "on_list", "just_below_tax")
_PROJECT_DRAW = (("ok", 70), ("below_investment", 8), ("below_tax", 8), ("below_both", 3), ("two_high", 6),
                 ("outside_park", 2), ("on_list", 3))
_LISTING_FLAGS = ("safety_hazard", "environmental_hazard")  # what the assessment's register check looks at
SCENARIO_FAILURES = {
    "ok": (), "exact_threshold": (), "below_investment": ("investment_per_mu_below_threshold",),
    "below_tax": ("tax_per_mu_below_threshold",), "just_below_tax": ("tax_per_mu_below_threshold",),
    "below_both": ("investment_per_mu_below_threshold", "tax_per_mu_below_threshold"),
    "two_high": ("two_high_project",), "outside_park": ("not_in_park_or_cluster",),
    "on_list": ("applicant_on_safety_or_env_list",),
}
_SCHEDULES = (
    (ScheduleStep(1, 3, 6, 4), ScheduleStep(4, None, 5, 5)),  # 6:4 for three years, then 5:5
    (ScheduleStep(1, None, 5, 5),),
    (ScheduleStep(1, 1, 7, 3), ScheduleStep(2, 2, 6, 4), ScheduleStep(3, None, 5, 5)),
    (ScheduleStep(1, None, 4, 6),),
)
CLOSE_BELOW, RELOCATE_BELOW, NEVER_IN_PARK_BELOW = 0.06, 0.12, 0.25


def _round_to(x: float, step: int) -> int:
    return int(round(x / step)) * step


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


class CountyGenerator:
    """``CountyGenerator(size, seed, year)``: ``year`` is the operating year (exits, releases, projects,
    tax receipts, settlement); the indicators are for ``year - 1`` (what the assessment evaluates)."""

    def __init__(self, size: str | Size = "tiny", seed: int = 42, year: int = 2025):
        self.size = SIZES[size] if isinstance(size, str) else size
        self.seed = int(seed)
        self.year = int(year)
        self.data_year = self.year - 1
        self.counties: tuple[County, ...] = make_counties(self.size, self.seed)
        self._perm: dict[str, AffinePermutation] = {}
        self._summaries: dict[str, CountySummary] = {}
        self._extras: dict[str, dict] = {}
        r = rng(self.seed, "org-code")
        a = r.randrange(1, _ORG_SPACE)
        while a % 31 == 0:
            a += 1
        self._org_a, self._org_b = a, r.randrange(_ORG_SPACE)

    # -- identities ------------------------------------------------------------------------------
    def credit_code(self, region: str, serial: int) -> str:
        """Valid GB 32100 code: 9 (市场监管) 1 (企业), region, a 9-character organisation code that is a
        bijection of ``serial`` (so distinct serials never collide), check character."""
        v = (self._org_a * serial + self._org_b) % _ORG_SPACE
        chars = []
        for _ in range(9):
            v, d = divmod(v, 31)
            chars.append(CHARSET[d])
        return make_credit_code("91" + region + "".join(reversed(chars)))

    def _name(self, r, county: County, word: str) -> str:
        city = "南通" if county.code == HOME_COUNTY else county.short
        x = r.random()
        suffix = next(s for s, p in _accumulate(_SUFFIX) if x < p)
        return f"{city}{r.choice(_SYL)}{r.choice(_SYL)}{word}{suffix}"

    # -- the enterprise pass ---------------------------------------------------------------------
    def county(self, code: str) -> County:
        return next(c for c in self.counties if c.code == code)

    def _permutation(self, county: County) -> AffinePermutation:
        p = self._perm.get(county.code)
        if p is None:
            p = self._perm[county.code] = AffinePermutation(self.size.enterprises_per_county, self.seed, county.code)
        return p

    @cached_property
    def _weights(self) -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
        out = {}
        for c in self.counties:
            r = rng(self.seed, "weights", c.code)
            tw = [1.0 / math.sqrt(k + 1.5) for k in range(len(c.townships))]
            r.shuffle(tw)
            pw = [3.0 if k == 0 else 2.0 if k == 1 else 1.0 for k in range(len(c.parks))]
            out[c.code] = (tuple(_cum(tw)), tuple(_cum(pw)))
        return out

    def enterprises(self, county: County | None = None) -> Iterator[EnterpriseRecord]:
        """Lazily, county by county (or of one county)."""
        for c in (county,) if county is not None else self.counties:
            for i in range(self.size.enterprises_per_county):
                yield self.enterprise(c, i)

    def enterprise(self, county: County, i: int) -> EnterpriseRecord:
        n = self.size.enterprises_per_county
        q = (self._permutation(county)(i) + 0.5) / n
        z = z_of_quantile(q)
        r = rng(self.seed, "enterprise", county.code, i)
        tcum, pcum = self._weights[county.code]
        industry = INDUSTRIES[bisect.bisect_right(CUMULATIVE, r.random() * CUMULATIVE[-1])]
        in_park = q >= NEVER_IN_PARK_BELOW and r.random() < 0.45
        if in_park:
            park = county.parks[bisect.bisect_right(pcum, r.random() * pcum[-1])]
            township, park_id = park.township_code, park.park_id
        else:
            township = county.townships[bisect.bisect_right(tcum, r.random() * tcum[-1])].code
            park_id = None
        code = self.credit_code(county.code, county.index * 2**24 + i)
        name = self._name(r, county, industry.word)

        # figures
        g = r.gauss
        land_mu = clamp(lognormal(r, 20.0 if in_park else 7.0, 0.8 if in_park else 0.9), 1.0, 1500.0)
        land = max(1, round(land_mu * 10_000))
        rev_per_mu = (300.0 if in_park else 90.0) * math.exp(0.55 * z + 0.35 * g(0, 1))
        revenue_wan = max(20.0, land_mu * rev_per_mu)
        revenue = _round_to(revenue_wan * 1_000_000, 10_000)  # fen, whole 100 元
        under_two = q >= RELOCATE_BELOW and r.random() < 0.05
        tax_rate = clamp(0.045 * math.exp(0.35 * z + 0.35 * g(0, 1)), 0.002, 0.2) * (0.4 if under_two else 1.0)
        tax = round(revenue * tax_rate)
        if r.random() < 0.015:
            value_added = -_round_to(revenue * r.uniform(0.0, 0.05), 10_000)
        else:
            value_added = _round_to(revenue * clamp(0.22 * math.exp(0.25 * g(0, 1)), 0.05, 0.6), 10_000)
        energy_tce = max(0.5, revenue_wan * industry.energy_tce_per_wan * math.exp(0.45 * g(0, 1) - 0.25 * z))
        energy = round(energy_tce * 1000)
        electricity = round(energy_tce * r.uniform(0.45, 0.9) * 1000 / 0.3)
        emissions: dict[str, int] = {}
        for pollutant, per_wan in industry.emissions_t_per_wan.items():
            if r.random() < 0.1:
                continue  # no permit data for it
            t = revenue_wan * per_wan * math.exp(0.6 * g(0, 1) - 0.3 * z)
            units = round(t * 10_000)
            if units > 0:
                emissions[pollutant] = units
        scale = "规上" if revenue >= 2_000_000_000 else "规下"
        if scale == "规上" or r.random() < 0.5:
            rnd_ratio = (0.015 if scale == "规上" else 0.008) * math.exp(0.5 * g(0, 1) + 0.3 * z)
            rnd = _round_to(revenue * clamp(rnd_ratio, 0.0, 0.15), 10_000)
        else:
            rnd = 0
        employees = max(3, int(revenue_wan / (55.0 * math.exp(0.25 * z + 0.3 * g(0, 1)))))

        # flags
        eco = not in_park and r.random() < 0.025
        safety = r.random() < (0.08 if q < 0.2 else 0.03)
        env_hazard = r.random() < (0.10 if industry.emissions_t_per_wan and q < 0.3 else 0.02)
        backward = not in_park and r.random() < (0.2 if q < 0.15 else 0.03)
        flags = tuple(n for n, on in (
            ("ecological_control_zone", eco), ("safety_hazard", safety), ("environmental_hazard", env_hazard),
            ("under_two_years", under_two), ("utility", industry.utility), ("backward_equipment", backward),
        ) if on)

        # disposition (seed 三): close the weakest and the hazardous outside the parks, move the next ones in
        disposition, reason, to_park, effective = None, "", None, None
        if not in_park and not industry.utility:
            if eco:
                disposition, reason = "close", "位于生态管控区"
            elif safety and env_hazard:
                disposition, reason = "close", "安全环保隐患较多"
            elif q < CLOSE_BELOW:
                disposition, reason = "close", "综合评价末位，工艺装备落后" if backward else "综合评价末位"
            elif q < RELOCATE_BELOW:
                disposition, reason = "relocate", "转型转移，迁入集聚区"
        if disposition:
            effective = date(self.year, 4, 1) + timedelta(days=r.randrange(120))  # after the spring evaluation
        if disposition == "relocate":
            others = [p for p in county.parks if p.township_code != township] or list(county.parks)
            to_park = others[r.randrange(len(others))].park_id
        rec = EnterpriseRecord(
            county.code, i, code, name, township, in_park, park_id, industry.code, scale, flags, self.data_year,
            land, tax, revenue, value_added, energy, electricity, emissions, rnd, employees, q,
            disposition, effective, to_park, reason,
        )
        if disposition:
            object.__setattr__(rec, "releases", self._releases(county, rec))
        return rec

    def _releases(self, county: County, rec: EnterpriseRecord) -> tuple[Release, ...]:
        r = rng(self.seed, "releases", rec.credit_code)
        reason = "closure" if rec.disposition == "close" else "relocation"
        held = {"LAND": rec.land, "ENERGY": rec.energy, **rec.emissions}
        prices = self.prices_fen(county)
        out = []
        for asset in ASSETS:
            if asset not in held:
                continue
            # A closure frees everything; a relocation frees the old site and the part of its energy and
            # emission rights the new, cleaner plant no longer needs.
            pct = 100 if reason == "closure" or asset == "LAND" else r.randint(30, 60)
            amount = held[asset] * pct // 100
            paid = r.random() < {"LAND": 0.5, "ENERGY": 0.2}.get(asset, 0.35)
            if amount <= 0:
                continue
            dept = ASSET_DEPARTMENT[asset]
            price = (prices[asset] * r.randint(50, 80) // 100) // 100 * 100 if paid else None
            out.append(Release(
                release_id=f"REL-{rec.county_code}-{self.year}-{rec.index:06d}-{asset}",
                department=dept, enterprise_credit_code=rec.credit_code, township_code=rec.township_code,
                county_code=rec.county_code, asset=asset, amount=amount, held=held[asset], reason=reason,
                basis="paid" if paid else "free", buyback_price_fen=price,
                document_ref=f"{county.short}{_DEPT_DOC[dept]}〔{self.year}〕{rec.index + 1}号",
                released_on=rec.effective_on + timedelta(days=r.randint(5, 40)),  # type: ignore[operator]
            ))
        return tuple(out)

    # -- per county ----------------------------------------------------------------------------
    def prices_fen(self, county: County) -> dict[str, int]:
        if county.code == HOME_COUNTY:
            return dict(DEFAULT_PRICES_FEN)
        r = rng(self.seed, "prices", county.code)
        return {a: _round_to(p * r.uniform(0.8, 1.2), 10_000) for a, p in DEFAULT_PRICES_FEN.items()}

    def price_list(self, county: County) -> list[Price]:
        return [Price(county.code, a, ASSET_UNIT[a], p, date(self.year, 1, 1))
                for a, p in self.prices_fen(county).items()]

    def summary(self, county: County) -> CountySummary:
        s = self._summaries.get(county.code)
        if s is None:
            s = CountySummary(county.code)
            for rec in self.enterprises(county):
                s.add(rec)
            self._summaries[county.code] = s
        return s

    def remember_summary(self, summary: CountySummary) -> None:
        """A writer that made the enterprise pass hands its summary over (no second pass)."""
        self._summaries[summary.county_code] = summary

    def forget(self, county: County) -> None:
        self._summaries.pop(county.code, None)
        self._extras.pop(county.code, None)

    def reclamations(self, county: County) -> list[Reclamation]:
        out = []
        for k in range(self.size.reclamations):
            r = rng(self.seed, "reclamation", county.code, k)
            t = county.townships[r.randrange(len(county.townships))]
            area = round(clamp(lognormal(r, 60.0, 0.6), 5.0, 500.0) * 10_000)
            registered = date(self.data_year, 3 + r.randrange(9), 1 + r.randrange(28))
            accepted_on = accepted_area = None
            if k % 5 != 4:
                accepted_on = date(self.year, 2 + r.randrange(6), 1 + r.randrange(28))
                if k % 3 != 2:
                    accepted_area = max(1, area * r.randint(85, 100) // 100)
            village = r.choice(_SYL) + r.choice(_SYL)
            out.append(Reclamation(
                f"ZJGG-{county.code}-{self.data_year}-{k + 1:02d}", county.code, t.code,
                f"{t.name}{village}村城乡建设用地增减挂钩项目", area, registered, accepted_on, accepted_area,
                f"{county.short}自然资验〔{self.year}〕{k + 1}号",
            ))
        return out

    def extras(self, county: County) -> dict:
        """projects, quota_requests, approvals, agreements, tax_receipts, reclamations of a county."""
        cached = self._extras.get(county.code)
        if cached is not None:
            return cached
        summary = self.summary(county)
        reclamations = self.reclamations(county)
        projects = self._projects(county, summary)
        requests = self._requests(county, summary, projects, reclamations)
        approvals = self._approvals(county, requests)
        by_applicant = {p.applicant_credit_code: p.project_id for p in projects if p.relocated_enterprise}
        agreements = self._agreements(county, summary, by_applicant)
        receipts = list(self._receipts(summary, agreements))
        out = {"reclamations": reclamations, "projects": projects, "quota_requests": requests,
               "approvals": approvals, "agreements": agreements, "tax_receipts": receipts}
        if len(self.counties) == 1:
            self._extras[county.code] = out
        return out

    # projects ---------------------------------------------------------------------------------
    def _projects(self, county: County, summary: CountySummary) -> list[Project]:
        out: list[Project] = []
        seq = 0
        first = True
        for rec in summary.relocations:
            r = rng(self.seed, "relocation-project", rec.credit_code)
            # the register lists a hazard-flagged enterprise (seed 四): its move-in project is refused
            listed = any(f in _LISTING_FLAGS for f in rec.flags)
            if (first and not listed) or r.random() < 0.5:
                first = first and listed
                seq += 1
                out.append(self._project(county, seq, "on_list" if listed else "ok", r, BY_CODE[rec.industry_code],
                                         rec.to_park_id, rec.credit_code, rec.name, relocated=True))
        for j in range(self.size.investor_projects):
            r = rng(self.seed, "investor-project", county.code, j)
            if j < len(PROJECT_PATTERN):
                scenario = PROJECT_PATTERN[j]
            else:
                x, acc = r.random() * 100, 0
                scenario = "ok"
                for name, w in _PROJECT_DRAW:
                    acc += w
                    if x < acc:
                        scenario = name
                        break
            if scenario == "two_high":
                industry = r.choice([i for i in PROJECT_INDUSTRIES if i.two_high])
            else:
                industry = r.choice([i for i in PROJECT_INDUSTRIES if not i.two_high])
            region = county.code if r.random() < 0.65 else r.choice(_INVESTOR_REGIONS)
            applicant = self.credit_code(region, county.index * 2**24 + 2**23 + j)
            park = None if scenario == "outside_park" else county.parks[r.randrange(len(county.parks))].park_id
            seq += 1
            out.append(self._project(county, seq, scenario, r, industry, park, applicant,
                                     self._name(r, county, industry.word), relocated=False))
        return out

    def _project(self, county: County, seq: int, scenario: str, r, industry: Industry, park_id: str | None,
                 applicant: str, applicant_name: str, relocated: bool) -> Project:
        land = round(clamp(lognormal(r, 30.0, 0.6), 5.0, 300.0) * 100) * 100  # 0.01 亩
        inv_ratio = r.uniform(0.55, 0.97) if scenario in ("below_investment", "below_both") else r.uniform(1.05, 2.6)
        tax_ratio = r.uniform(0.5, 0.95) if scenario in ("below_tax", "below_both") else r.uniform(1.05, 2.2)
        mu = land / 10_000
        investment = _round_to(ADMISSION_INVESTMENT_FEN_PER_MU * inv_ratio * mu, 1_000_000)  # whole 万元
        tax = _round_to(ADMISSION_TAX_FEN_PER_MU * tax_ratio * mu, 100)  # whole 元
        if scenario == "exact_threshold":  # exactly on both thresholds: admitted (>=)
            investment = ADMISSION_INVESTMENT_FEN_PER_MU * land // 10_000
            tax = ADMISSION_TAX_FEN_PER_MU * land // 10_000
        elif scenario == "just_below_tax":  # one fen short of the tax threshold
            tax = ADMISSION_TAX_FEN_PER_MU * land // 10_000 - 1
        revenue_wan = investment / 1_000_000 * r.uniform(0.8, 1.6)
        energy_need = max(1000, round(revenue_wan * industry.energy_tce_per_wan * r.uniform(0.6, 1.0) * 1000))
        emission_needs = {}
        for pollutant, per_wan in industry.emissions_t_per_wan.items():
            units = round(revenue_wan * per_wan * r.uniform(0.3, 0.7) * 10_000)
            if units > 0:
                emission_needs[pollutant] = units
        pid = f"PRJ-{county.code}-{self.year}-{seq:04d}"
        short = applicant_name.removesuffix("有限公司").removesuffix("股份").removesuffix("科技")
        what = "搬迁入园" if relocated else r.choice(("新建", "扩建", "智能化改造"))
        return Project(
            project_id=pid, county_code=county.code, name=f"{short}{what}项目",
            applicant_credit_code=applicant, applicant_name=applicant_name, park_id=park_id,
            in_park_or_cluster=park_id is not None, land=land, investment=investment, expected_yearly_tax=tax,
            energy_need=energy_need, emission_needs=emission_needs, industry_code=industry.code,
            two_high=scenario == "two_high", on_safety_or_env_list=scenario == "on_list",
            submitted_on=date(self.year, 7, 1) + timedelta(days=r.randrange(60)), scenario=scenario,
            expected_failures=SCENARIO_FAILURES[scenario], relocated_enterprise=relocated,
        )

    def _requests(self, county: County, summary: CountySummary, projects: list[Project],
                  reclamations: list[Reclamation]) -> list[QuotaRequest]:
        """One request per admitted project. Each asset's lines get the same share of their project's
        need, at most 85 % of what the pool will hold after the default retirement, so every request
        can be served."""
        admitted = [p for p in projects if p.expected_admitted]
        available = dict(summary.reusable)
        available["LAND"] += sum(rc.pooled_area for rc in reclamations)
        need_total = {a: sum(p.needs().get(a, 0) for p in admitted) for a in ASSETS}
        out = []
        for p in admitted:
            r = rng(self.seed, "request", p.project_id)
            lines = []
            for asset, need in p.needs().items():
                avail, total = available[asset], need_total[asset]
                amount = need if 85 * avail >= 100 * total else need * 85 * avail // (100 * total)
                if amount > 0:
                    lines.append(RequestLine(asset, amount, APPROVAL_OF_ASSET[asset], need))
            if lines:
                at = datetime(self.year, 9, 10, 10, 0, tzinfo=CST) + timedelta(days=r.randrange(70), minutes=r.randrange(480))
                out.append(QuotaRequest(f"REQ-{p.project_id}", p.project_id, county.code, at, tuple(lines)))
        return out

    def _approvals(self, county: County, requests: list[QuotaRequest]) -> list[Approval]:
        out = []
        for k, req in enumerate(requests):
            r = rng(self.seed, "approvals", req.request_id)
            kinds = sorted({line.approval_kind for line in req.lines})
            if k % 6 == 5 and len(kinds) > 1:
                kinds = kinds[:-1]  # one approval still outstanding at year end: the reservation waits
            n = int(req.project_id.rsplit("-", 1)[1])
            for kind in kinds:
                out.append(Approval(
                    req.project_id, req.request_id, county.code, kind, APPROVAL_DEPARTMENT[kind],
                    f"{county.short}{_APPROVAL_DOC[kind]}〔{self.year}〕{n}号",
                    req.requested_at.date() + timedelta(days=r.randint(10, 40)),
                ))
        return out

    # settlement ---------------------------------------------------------------------------------
    def _agreements(self, county: County, summary: CountySummary, projects: dict[str, str]) -> list[Agreement]:
        out = []
        for k, rec in enumerate(summary.relocations):
            r = rng(self.seed, "agreement", rec.credit_code)
            start = _add_months(rec.effective_on, 1)  # type: ignore[arg-type]
            end = _add_months(start, 60) - timedelta(days=1)
            schedule = _SCHEDULES[0] if k % 4 in (0, 3) else _SCHEDULES[k % 4]
            minimum = None
            if k % 4 == 0:  # a guaranteed minimum for the township, about a third of its expected share
                minimum = max(1_000_000, _round_to(rec.tax * 0.6 * 0.5 * 0.3, 100_000))
            stats = (schedule[0].origin_weight, schedule[0].destination_weight) if k % 3 == 0 else None
            base = dict(
                agreement_id=f"AGR-{county.code}-{self.year}-{rec.index:06d}", county_code=county.code,
                enterprise=rec.credit_code, origin=f"township:{rec.township_code}", destination=f"park:{rec.to_park_id}",
                local_shares_bp=dict(LOCAL_SHARES_BP), start=start, end=end, remainder_to=f"park:{rec.to_park_id}",
                guaranteed_minimum_fen=minimum, statistics_weights=stats, project_id=projects.get(rec.credit_code),
            )
            out.append(Agreement(version=1, effective_from=start, schedule=schedule,
                                 signed_on=rec.effective_on - timedelta(days=r.randint(3, 20)), **base))  # type: ignore[operator]
            if k % 5 == 1:  # amended after three months: the split becomes 5:5
                eff = _add_months(start, 3)
                out.append(Agreement(version=2, effective_from=eff, schedule=_SCHEDULES[1],
                                     signed_on=eff - timedelta(days=r.randint(5, 25)), **base))
        return out

    def _receipts(self, summary: CountySummary, agreements: list[Agreement]) -> Iterator[TaxReceipt]:
        starts = {a.enterprise: a.start for a in agreements if a.version == 1}
        for rec in summary.relocations:
            r = rng(self.seed, "receipts", rec.credit_code)
            growth = math.exp(r.gauss(0.1, 0.15))
            start = starts[rec.credit_code]
            for month in range(start.month, 13):
                kinds = [("VAT", 0.62 / 12)] + ([("CIT", 0.38 / 4)] if month % 3 == 0 else [])
                for kind, share in kinds:
                    amount = max(10_000, round(rec.tax * share * growth * math.exp(r.gauss(0, 0.2))))
                    label = f"{self.year}-{month:02d}"
                    rid = f"TR-{rec.credit_code}-{label}-{kind}"
                    reported = _add_months(date(self.year, month, 1), 1) + timedelta(days=r.randrange(14))
                    yield TaxReceipt(rid, rec.credit_code, rec.county_code, label, kind, amount, None, reported)
                    if r.random() < 0.04:  # a correction: the new full amount, replacing the receipt
                        new = max(10_000, round(amount * r.uniform(0.85, 1.15)))
                        yield TaxReceipt(rid + "-C1", rec.credit_code, rec.county_code, label, kind, new, rid,
                                         reported + timedelta(days=r.randint(10, 30)))


def _cum(ws: list[float]) -> list[float]:
    out, acc = [], 0.0
    for w in ws:
        acc += w
        out.append(acc)
    return out


def _accumulate(pairs):
    acc = 0.0
    for s, p in pairs:
        acc += p
        yield s, acc if acc < 0.999999 else 1.0
