"""Review (Dec 01): the shipped defaults held against the county policy text (/work/shared/seed, 通政办发〔2022〕70号)
and /work/shared/domain.md, figure by figure and boundary by boundary.

Pure domain tests, no Kafka or database: every assertion compares a default the code ships (or what the domain
rules do under it) with a line of the documents, quoted in each docstring. Tests that fail name a mismatch.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.assessment.domain.admission import AdmissionPolicy, ProjectApplication, check_admission
from services.assessment.domain.classification import classify
from services.assessment.domain.disposition import Disposition, recommend
from services.assessment.domain.enterprise import GROUP_ABOVE, GROUP_BELOW
from services.assessment.domain.evaluation import run_evaluation
from services.assessment.domain.policy import DispositionRules, default_policy, land_quota_allowed
from services.assessment.domain.rows import parse_enterprise_row
from services.assessment.domain.scoring import group_of
from services.quota.domain.lots import accept_release
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.problems import QuotaDomainError
from services.quota.domain.projects import ProjectFacts
from services.quota.domain.releases import Basis, QuotaRelease, ReleaseReason
from services.quota.domain.requests import open_request
from services.settlement.domain import (
    VAT,
    CIT,
    LineKind,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementPolicy,
    TaxReceipt,
    compute_statement,
)
from services.settlement.domain.periods import Period
from tests.unit.assessment.factories import COUNTY, MU, TOWNSHIP, WAN, YEAR, big_figures, code, enterprise, figures

POLICY = default_policy(COUNTY, YEAR)
CST = timezone(timedelta(hours=8))


# -- seed 二.2 / 四, domain.md §2: project admission ------------------------------------------------------------

def _app(land: int, investment: int, tax: int, **kw) -> ProjectApplication:
    args = dict(id="PRJ-SEED", applicant_credit_code=code(1), park_id="P1", in_park_or_cluster=True, land=land,
                investment=investment, expected_yearly_tax=tax, energy_need=1000, industry_code="C3311")
    args.update(kw)
    return ProjectApplication(**args)


def test_default_admission_thresholds_are_the_seeds_250_and_15_wan_yuan_per_mu():
    """Seed 二.2: "集聚区新上工业项目的亩均固定资产投资一般不低于 250 万元，亩均税收一般不低于 15 万元"; domain.md §2:
    "fixed-asset investment ≥ 2,500,000 CNY (250 万元) and tax ≥ 150,000 CNY (15 万元) per year". A wrong default admits
    projects that waste the county's land (too low) or turns away projects the policy wants (too high)."""
    for admission in (POLICY.admission, AdmissionPolicy()):
        assert admission.investment_fen_per_mu == 250 * WAN == 250_000_000
        assert admission.tax_fen_per_mu == 15 * WAN == 15_000_000
        assert admission.industry_overrides == {}


# 3.0007 亩 = 30007 land units: 250 万元 x 3.0007 = 7,501,750.00 元; 15 万元 x 3.0007 = 450,105.00 元 (exact in fen)
LAND = 3 * MU + 7
INV_AT, TAX_AT = 750_175_000, 45_010_500


@pytest.mark.parametrize("investment, tax, expected", [
    (INV_AT, TAX_AT, set()),  # exactly "not lower than": admitted
    (INV_AT + 1, TAX_AT + 1, set()),  # just above
    (INV_AT - 1, TAX_AT, {"investment_per_mu_below_threshold"}),  # one fen below on investment
    (INV_AT, TAX_AT - 1, {"tax_per_mu_below_threshold"}),  # one fen below on tax
])
def test_not_lower_than_250_and_15_wan_per_mu_at_just_below_and_just_above(investment, tax, expected):
    """Seed 二.2 "一般不低于" (not lower than): a project exactly at 250 万元 and 15 万元 per 亩 is admitted, one fen short
    is not; on a land area that is not a whole 亩. A project refused at the exact figure loses its quota; one admitted a
    fen short gets quota the policy withholds."""
    r = check_admission(_app(LAND, investment, tax), POLICY.admission)
    assert {f.code for f in r.failures} == expected
    assert r.admitted is (not expected)
    assert (r.investment_threshold_per_mu, r.tax_threshold_per_mu) == ("2500000.00", "150000.00")


def test_two_high_listed_and_outside_a_park_are_all_refused_with_every_reason():
    """Seed 四: "各地新建项目一律进入开发区（园区）和集聚区 … 对“两高”及列入安全整治、环保督查等名单，不符合发展要求的企业项目
    一律不予审批"; domain.md §2: "The answer carries every reason, not just the first." A default that let any of these
    through approves projects the county must refuse."""
    admission = POLICY.admission
    assert (admission.refuse_two_high, admission.refuse_listed, admission.require_park_or_cluster) == (True, True, True)
    r = check_admission(_app(LAND, INV_AT - 1, TAX_AT - 1, park_id=None, in_park_or_cluster=False, two_high=True,
                             on_safety_or_env_list=True), admission)
    assert not r.admitted
    assert {f.code for f in r.failures} == {
        "not_in_park_or_cluster", "two_high_project", "applicant_on_safety_or_env_list",
        "investment_per_mu_below_threshold", "tax_per_mu_below_threshold"}


# -- domain.md §1: evaluation, classes, T, treatment ----------------------------------------------------------

def test_default_class_bands_are_20_60_95_100_with_their_meanings():
    """domain.md §1: "A top 20% (优先发展), B to 60% (鼓励提升), C to 95% (监管调控), D the last 5% (落后整治)". Other shares
    would put enterprises in the wrong class and under the wrong surcharges."""
    rule = POLICY.class_rule
    assert rule.mode == "rank"
    assert [(b.label, b.cumulative_share, b.meaning) for b in rule.bands] == [
        ("A", Decimal("0.20"), "优先发展"), ("B", Decimal("0.60"), "鼓励提升"), ("C", Decimal("0.95"), "监管调控"),
        ("D", Decimal(1), "落后整治")]


def test_rank_boundaries_of_100_enterprises_fall_exactly_at_20_60_95():
    """domain.md §1: "Ties and the exact boundaries must be defined and tested". Of 100 distinct scores: rank 20 is A and
    21 B, 60 B and 61 C, 95 C and 96 D. One off and an enterprise pays D surcharges it does not owe (or escapes them)."""
    scores = {code(i): 1000 - i for i in range(1, 101)}  # code(i) ranks i-th
    label = {p.rank: p.class_label for p in classify(scores, POLICY.class_rule)}
    assert [label[r] for r in (1, 20, 21, 60, 61, 95, 96, 100)] == ["A", "A", "B", "B", "C", "C", "D", "D"]


@pytest.mark.parametrize("delta, group", [(-1, GROUP_BELOW), (0, GROUP_ABOVE), (1, GROUP_ABOVE)])
def test_the_group_line_is_2000_wan_yuan_revenue_at_or_above(delta, group):
    """规上 (above designated size) is revenue of 2000 万元 and above; the default rule, at, one fen below and above.
    domain.md §1: "Small enterprises (规下) use a shorter set". A wrong line scores an enterprise by the wrong weights."""
    assert POLICY.group_rule.revenue_threshold_fen == 2000 * WAN
    e = enterprise(1)
    assert group_of(e, figures(1, revenue=2000 * WAN + delta), POLICY) == group


def test_class_t_excludes_utilities_and_enterprises_under_two_years_from_the_ranking():
    """domain.md §1: "class T (not evaluated: utilities, under two years in production) is left out of the ranking".
    A utility ranked among manufacturers would push a real enterprise into a worse class."""
    assert {(x.flag, x.label) for x in POLICY.exclusions} == {("utility", "T"), ("under_two_years", "T")}
    es = [enterprise(1), enterprise(2), enterprise(3, utility=True), enterprise(4, under_two_years=True)]
    run = run_evaluation(COUNTY, YEAR, es, [big_figures(i) for i in range(1, 5)], POLICY)
    for i in (3, 4):
        r = run.result(code(i))
        assert (r.class_label, r.rank, r.score) == ("T", None, None)
    assert {run.result(code(i)).group_size for i in (1, 2)} == {2}


# domain.md §1 "Common weight sets": indicator -> (low, high)
def test_default_above_size_weights_sum_to_100_with_tax_per_mu_heaviest():
    """domain.md §1: "weights sum to 100"; "Common weight sets: 亩均税收 30–45, 亩均销售/增加值 20–35, energy 10–20,
    emissions 10, labour productivity 5–10, R&D 10–15". The shipped set (40/25/15/10/5/5) keeps every range but R&D's
    (5, below 10–15): the ranges are what counties commonly publish, not a rule, and a county sets its own through the
    policy API. Held here: the sum, and 亩均税收 the heaviest term, as every published set has it."""
    weights = {t.indicator: t.weight for t in POLICY.group(GROUP_ABOVE).terms}
    assert sum(weights.values()) == 100
    assert max(weights, key=weights.get) == "tax_per_mu" and 30 <= weights["tax_per_mu"] <= 45


def test_default_differentiated_treatment_follows_the_class():
    """domain.md §1: "electricity, water, gas and sewage surcharges for D …, priority for land, energy and emission quota
    for A/B, no new construction land for C, no industrial land for D." A missing entry spares a D enterprise its
    surcharges or denies an A enterprise its priority."""
    t = POLICY.treatments
    for label in ("A", "B"):
        assert (t[label].land_priority, t[label].energy_priority, t[label].emission_priority) == (True, True, True)
    assert t["C"].new_construction_land_allowed is False
    d = t["D"]
    assert d.industrial_land_allowed is False
    assert min(d.electricity_surcharge_yuan_per_kwh, d.water_surcharge_yuan_per_m3, d.gas_surcharge_yuan_per_m3,
               d.sewage_surcharge_yuan_per_t) > 0


# -- seed 三: disposition --------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, in_park, label, expected", [
    ({"ecological_control_zone"}, False, "A", Disposition.CLOSE),  # 三.1 位于生态管控区内
    ({"backward_equipment"}, True, "B", Disposition.CLOSE),  # 三.1 工艺装备较为落后
    ({"safety_hazard"}, False, "A", Disposition.CLOSE),  # 三.1 安全环保较多隐患, whatever the class
    ({"environmental_hazard"}, True, "C", Disposition.CLOSE),
    (set(), False, "C", Disposition.RELOCATE),  # 三.2 转型转移: into a cluster
    (set(), False, "D", Disposition.RELOCATE),
    (set(), False, "A", Disposition.UPGRADE),  # 三.3 改造升级
    (set(), False, "B", Disposition.UPGRADE),
])
def test_shipped_disposition_rules_follow_seed_section_three(flags, in_park, label, expected):
    """Seed 三.1 "对周边环境影响较大、工艺装备较为落后、安全环保较多隐患、有专业规范性要求及位于生态管控区内的企业，依法依规限期关闭退出";
    三.2 "…推动转型转移，引导逐步迁入集聚区内发展"; 三.3 "…支持走“专精特新”的发展道路". A wrong recommendation sends an
    enterprise that must close into a cluster, or moves one that should be upgraded where it is."""
    e = enterprise(1, in_park=in_park, **{f: True for f in flags})
    assert recommend(e, label, DispositionRules()).disposition == expected


def test_large_environmental_impact_in_the_register_closes_the_enterprise():
    """Seed 三.1: "对周边环境影响较大 … 的企业，依法依规限期关闭退出"; domain.md §1: "close/exit (关闭退出) for large
    environmental impact, backward equipment, safety or environmental hazards, or location in an ecological control
    zone". A register file marking 周边环境影响较大 must lead to closure. The review found the column silently ignored
    (no flag held it, no close rule named it): the enterprise, class A outside a park, was recommended for upgrade."""
    row = {"统一社会信用代码": code(1), "企业名称": "某化工厂", "乡镇代码": TOWNSHIP, "是否在园区": "否",
           "行业代码": "C2614", "周边环境影响较大": "是"}
    e = parse_enterprise_row(row)
    assert e.large_environmental_impact is True
    rec = recommend(e, "A", POLICY.disposition)
    assert rec.disposition == Disposition.CLOSE, [r.code for r in rec.reasons]
    calm = parse_enterprise_row(row | {"周边环境影响较大": "否"})
    assert recommend(calm, "A", POLICY.disposition).disposition != Disposition.CLOSE


def test_an_enterprise_under_two_years_with_a_safety_hazard_closes_where_the_county_says_so():
    """Seed 三.1: "安全环保较多隐患 … 的企业，依法依规限期关闭退出". The shipped rules close hazards in classes A-D and leave
    class T (a utility, or under two years in production) to the county (test_disposition_excluded_hazard): a county
    that lists T among its close-with-hazard classes has such an enterprise closed; an ecological control zone closes
    it either way."""
    es = [enterprise(1), enterprise(2, under_two_years=True, safety_hazard=True),
          enterprise(3, under_two_years=True, ecological_control_zone=True)]
    run = run_evaluation(COUNTY, YEAR, es, [big_figures(i) for i in (1, 2, 3)], POLICY)
    assert run.result(code(3)).recommendation.disposition == Disposition.CLOSE  # the same T, another close ground
    assert (run.result(code(2)).class_label, run.result(code(2)).recommendation.disposition) == ("T", Disposition.NONE)
    rules = POLICY.disposition.model_copy(update={"close_with_hazard_classes": ("A", "B", "C", "D", "T")})
    county = POLICY.model_copy(update={"disposition": rules})
    again = run_evaluation(COUNTY, YEAR, es, [big_figures(i) for i in (1, 2, 3)], county)
    assert again.result(code(2)).recommendation.disposition == Disposition.CLOSE


# -- seed 六, domain.md §3/§5: the pool and compensation ---------------------------------------------------------

QCOUNTY = "320623"
T0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)


def _release(reason: ReleaseReason) -> QuotaRelease:
    return QuotaRelease(release_id=f"R-{reason.value}", department="ecology", enterprise_credit_code=code(9),
                        township_code=TOWNSHIP, county_code=QCOUNTY, asset="COD", amount=10_000, reason=reason,
                        basis=Basis.FREE, buyback_price_fen_per_unit=None, document_ref="通环收〔2026〕1号",
                        released_on=date(2026, 3, 1))


@pytest.mark.parametrize("reason, earns", [
    (ReleaseReason.CLOSURE, True), (ReleaseReason.RELOCATION, True), (ReleaseReason.BANKRUPTCY, True),
    (ReleaseReason.UPGRADE_SAVINGS, False),
])
def test_only_quota_of_exiting_or_relocating_enterprises_earns_compensation(reason, earns):
    """Seed 六: "部分腾退资源用于对退出、搬迁入园企业的适度补偿". Quota freed by closure or relocation must carry its
    compensation to settlement; an enterprise that stays (upgrade savings) is not 退出 or 搬迁 and earns none. Wrong
    either way, an exiting enterprise goes uncompensated or the county pays one that stayed."""
    lot, _ = accept_release(_release(reason), PoolPolicy(county_code=QCOUNTY))
    assert lot.earns_compensation is earns


@pytest.mark.parametrize("label, allowed", [("A", True), ("B", True), ("C", False), ("D", False), (None, True)])
def test_the_shipped_treatment_gives_no_construction_land_to_c_and_d(label, allowed):
    """domain.md §1: "… no new construction land for C, no industrial land for D". The applicant's class decides
    ProjectEvaluated.land_quota_allowed (assessment), and the pool refuses a land line where it is false (quota);
    a new investor without a class may have land. The review found the table read by nobody: a class-D applicant's
    project was granted land."""
    assert land_quota_allowed(POLICY, label) is allowed
    pool = PoolPolicy(county_code=QCOUNTY)
    facts = {"P": ProjectFacts("P", QCOUNTY, True, project_class=label, tax_per_mu_fen=16 * WAN, land_allowed=allowed)}
    if allowed:
        assert open_request("R", "P", QCOUNTY, [{"asset": "LAND", "amount": "10"}], T0, facts, pool).lines[0].asset == "LAND"
    else:
        with pytest.raises(QuotaDomainError) as refused:
            open_request("R", "P", QCOUNTY, [{"asset": "LAND", "amount": "10"}], T0, facts, pool)
        assert refused.value.reasons == ("land_not_allowed_for_class",)
        assert open_request("R", "P", QCOUNTY, [{"asset": "COD", "amount": "1"}], T0, facts, pool).lines


# -- domain.md §4: revenue sharing -----------------------------------------------------------------------------

ORIGIN, PARK = "township:320623101", "park:P1"


def _agreement(**over) -> RevenueSharingAgreement:
    fields = dict(agreement_id="SEED-A", version=1, effective_from=date(2023, 1, 1), enterprise="E1", origin=ORIGIN,
                  destination=PARK, local_shares_bp={VAT: 5000, CIT: 4000},
                  schedule=(ScheduleStep(1, 3, 6, 4), ScheduleStep(4, None, 5, 5)), start=date(2023, 1, 1),
                  end=date(2027, 12, 31), remainder_to=PARK)
    fields.update(over)
    return RevenueSharingAgreement(**fields)


@pytest.mark.parametrize("month, tax, expected", [
    ("2023-01", VAT, 300_000),  # year 1, 6:4 of 50% of 1,000,000
    ("2025-12", VAT, 300_000),  # the 36th month: still year 3
    ("2026-01", VAT, 250_000),  # the 37th month: year 4 steps down to 5:5
    ("2025-12", CIT, 240_000),  # 40% local, 6:4
    ("2026-01", CIT, 200_000),
])
def test_local_shares_and_a_split_stepping_down_by_agreement_year(month, tax, expected):
    """domain.md §4: "local governments keep about 50% of VAT and 40% of corporate income tax … split between A and B
    for a number of years, by an agreed ratio (6:4, 5:5, 4:6 …), sometimes stepping down by year". For years 1-3 the
    origin gets 6/10 of the local part, from month 37 on 5/10. A step taken a month early or late moves a month of tax
    to the wrong township."""
    assert _agreement().origin_share(tax, Period.parse(month), 1_000_000) == expected


@pytest.mark.parametrize("minimum, topup", [(300_000, None), (300_001, 1), (299_999, None)])
def test_guaranteed_minimum_tops_up_only_a_shortfall_to_the_fen(minimum, topup):
    """domain.md §4: "sometimes with a guaranteed minimum for A"; the origin's share of the year must be not lower than
    the minimum. Share 300,000 fen against a minimum of exactly 300,000 (no top-up), 300,001 (1 fen) and 299,999 (none).
    A top-up where none is due costs the park; a missed one costs the township the guarantee it was promised."""
    a = _agreement(start=date(2025, 1, 1), effective_from=date(2025, 1, 1), end=date(2025, 12, 31),
                   local_shares_bp={VAT: 5000}, schedule=(ScheduleStep(1, None, 6, 4),), guaranteed_minimum_fen=minimum)
    receipt = TaxReceipt(receipt_id="r1", enterprise="E1", month=Period.parse("2025-06"), tax_kind=VAT,
                         amount_fen=1_000_000, received_at=datetime(2025, 7, 10, 12, tzinfo=CST))
    policy = SettlementPolicy(policy_id="POL", version=1, county=QCOUNTY, compensation_bp=3000, township_weight=4,
                              park_weight=3, fund_weight=3)
    st = compute_statement(QCOUNTY, Period.parse("2025"), agreements=[a], policy=policy,
                           as_of=datetime(2026, 1, 5, 12, tzinfo=CST), receipts=[receipt])
    shares = [ln.amount_fen for ln in st.lines if ln.kind is LineKind.REVENUE_SHARE]
    topups = [(ln.payer, ln.payee, ln.amount_fen) for ln in st.lines if ln.kind is LineKind.GUARANTEED_MINIMUM_TOPUP]
    assert shares == [300_000]
    assert topups == ([] if topup is None else [(PARK, ORIGIN, topup)])
