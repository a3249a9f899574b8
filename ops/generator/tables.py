"""The files departments hand over: one table per file, Chinese headers, exact decimal strings.

The enterprise register and the indicator files use exactly the headers the assessment import accepts
(``services/assessment/domain/rows.py``); units are in the header, and every figure is exact in it
(万元 figures are whole hundreds of 元, so two decimals are exact). The other tables have no importer
yet: ``Table.columns`` maps each header to the contract field it carries (see README.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from shared.amounts import format_amount

from .geography import County
from .model import (
    ASSESSMENT_POLLUTANT, ASSET_SCALE, ASSET_UNIT, COUNTY, DEV_REFORM, ECOLOGY, INDUSTRY, NATURAL_RESOURCES, TAX, Agreement, Approval,
    EnterpriseRecord, Price, Project, QuotaRequest, Reclamation, Release, TaxReceipt,
)

TEXT, NUM = "text", "num"


@dataclass(frozen=True)
class Column:
    header: str
    field: str  # the contract / HTTP body field it carries
    kind: str = TEXT  # NUM: written as a number cell in XLSX


@dataclass(frozen=True)
class Table:
    key: str
    department: str
    filename: str  # without extension, under files/<department>/
    title: str  # XLSX sheet title
    columns: tuple[Column, ...]

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    @property
    def path(self) -> str:
        return f"files/{self.department}/{self.filename}"


def _c(header: str, field: str, kind: str = TEXT) -> Column:
    return Column(header, field, kind)


def yes(b: bool) -> str:
    return "是" if b else "否"


def money(fen: int) -> str:
    return format_amount(fen, 2)


def wan(fen: int) -> str:
    """fen -> 万元 with two decimals; exact because statistics figures are whole hundreds of 元."""
    assert fen % 10_000 == 0, "statistics money must be whole hundreds of yuan"
    return format_amount(fen // 10_000, 2)


def amount(asset: str, units: int) -> str:
    return format_amount(units, ASSET_SCALE[asset])


def d(x) -> str:
    return "" if x is None else x.isoformat()


# -- the register and the indicators (assessment import headers) ------------------------------------------

REGISTER = Table("enterprises", INDUSTRY, "enterprises", "企业台账", (
    _c("统一社会信用代码", "credit_code"), _c("企业名称", "name"), _c("乡镇代码", "township_code"),
    _c("是否在园区", "in_park"), _c("园区编号", "park_id"), _c("行业代码", "industry_code"), _c("规模", "scale"),
    _c("生态管控区", "ecological_control_zone"), _c("安全隐患", "safety_hazard"), _c("环保隐患", "environmental_hazard"),
    _c("投产不满两年", "under_two_years"), _c("公用事业", "utility"), _c("工艺装备落后", "backward_equipment"),
))
_FLAG_ORDER = ("ecological_control_zone", "safety_hazard", "environmental_hazard", "under_two_years", "utility",
               "backward_equipment")


def register_row(e: EnterpriseRecord) -> list[str]:
    return [e.credit_code, e.name, e.township_code, yes(e.in_park), e.park_id or "", e.industry_code, e.scale,
            *(yes(f in e.flags) for f in _FLAG_ORDER)]


_ID = (_c("统一社会信用代码", "credit_code"), _c("年度", "year", NUM))
INDICATORS = {
    INDUSTRY: Table("indicators_industry", INDUSTRY, "indicators", "工信统计指标", _ID + (
        _c("营业收入(万元)", "revenue", NUM), _c("工业增加值(万元)", "value_added", NUM),
        _c("研发经费(万元)", "rnd", NUM), _c("年平均职工人数(人)", "employees", NUM))),
    TAX: Table("indicators_tax", TAX, "indicators", "税收指标", _ID + (_c("实缴税金(元)", "tax", NUM),)),
    DEV_REFORM: Table("indicators_development_reform", DEV_REFORM, "indicators", "能耗指标", _ID + (
        _c("综合能耗(吨标准煤)", "energy", NUM), _c("用电量(万千瓦时)", "electricity", NUM))),
    ECOLOGY: Table("indicators_ecology", ECOLOGY, "indicators", "排放指标", _ID + (
        _c("化学需氧量(吨)", "emissions.COD", NUM), _c("氨氮(吨)", "emissions.NH3-N", NUM),
        _c("二氧化硫(吨)", "emissions.SO2", NUM), _c("氮氧化物(吨)", "emissions.NOx", NUM),
        _c("挥发性有机物(吨)", "emissions.VOCs", NUM))),
    NATURAL_RESOURCES: Table("indicators_natural_resources", NATURAL_RESOURCES, "indicators", "用地指标",
                             _ID + (_c("用地面积(亩)", "land", NUM),)),
}


def indicator_row(department: str, e: EnterpriseRecord) -> list[str] | None:
    """The department's row for the enterprise, None when it reports nothing (no emissions data)."""
    head = [e.credit_code, str(e.year)]
    if department == INDUSTRY:
        return head + [wan(e.revenue), wan(e.value_added), wan(e.rnd), str(e.employees)]
    if department == TAX:
        return head + [money(e.tax)]
    if department == DEV_REFORM:
        return head + [format_amount(e.energy, 3), format_amount(e.electricity, 4)]
    if department == ECOLOGY:
        if not e.emissions:
            return None
        return head + [amount(a, e.emissions[a]) if a in e.emissions else "" for a in ("COD", "NH3N", "SO2", "NOX", "VOCS")]
    if department == NATURAL_RESOURCES:
        return head + [format_amount(e.land, 4)]
    raise ValueError(department)


def indicator_fields(department: str, e: EnterpriseRecord) -> dict[str, str]:
    """IndicatorsReported.fields: contract units (money 元, land 亩, energy tce, electricity kWh, t)."""
    if department == INDUSTRY:
        return {"revenue": money(e.revenue), "value_added": money(e.value_added), "rnd": money(e.rnd),
                "employees": str(e.employees)}
    if department == TAX:
        return {"tax": money(e.tax)}
    if department == DEV_REFORM:
        return {"energy": format_amount(e.energy, 3), "electricity": str(e.electricity)}
    if department == ECOLOGY:
        return {f"emissions.{ASSESSMENT_POLLUTANT[a]}": amount(a, v) for a, v in e.emissions.items()}
    if department == NATURAL_RESOURCES:
        return {"land": format_amount(e.land, 4)}
    raise ValueError(department)


# -- exits, releases, reclamation, approvals ----------------------------------------------------------------

EXITS = Table("exits", INDUSTRY, "exits", "关停搬迁台账", (
    _c("统一社会信用代码", "credit_code"), _c("企业名称", "name"), _c("县区代码", "county_code"),
    _c("处置方式", "disposition"), _c("原乡镇代码", "from_township_code"), _c("迁入园区编号", "to_park_id"),
    _c("生效日期", "effective_on"), _c("原因", "reason"),
))


def exit_row(e: EnterpriseRecord) -> list[str]:
    return [e.credit_code, e.name, e.county_code, e.disposition or "", e.township_code, e.to_park_id or "",
            d(e.effective_on), e.exit_reason]


def _release_table(dept: str, title: str) -> Table:
    return Table(f"releases_{dept}", dept, "releases", title, (
        _c("收储编号", "release_id"), _c("统一社会信用代码", "enterprise_credit_code"), _c("乡镇代码", "township_code"),
        _c("县区代码", "county_code"), _c("指标类型", "asset"), _c("收储数量", "amount", NUM), _c("计量单位", "unit"),
        _c("收储原因", "reason"), _c("取得方式", "basis"), _c("回购单价(元)", "buyback_price_per_unit", NUM),
        _c("文件编号", "document_ref"), _c("收储日期", "released_on"),
    ))


RELEASES = {
    ECOLOGY: _release_table(ECOLOGY, "排污权收储"),
    DEV_REFORM: _release_table(DEV_REFORM, "用能权收储"),
    NATURAL_RESOURCES: _release_table(NATURAL_RESOURCES, "土地收储"),
}


def release_row(r: Release) -> list[str]:
    return [r.release_id, r.enterprise_credit_code, r.township_code, r.county_code, r.asset, amount(r.asset, r.amount),
            ASSET_UNIT[r.asset], r.reason, r.basis, "" if r.buyback_price_fen is None else money(r.buyback_price_fen),
            r.document_ref, d(r.released_on)]


RECLAMATION = Table("reclamation", NATURAL_RESOURCES, "reclamation", "增减挂钩项目", (
    _c("项目编号", "project_id"), _c("项目名称", "name"), _c("县区代码", "county_code"), _c("乡镇代码", "township_code"),
    _c("立项面积(亩)", "area", NUM), _c("立项日期", "registered_on"), _c("验收日期", "accepted_on"),
    _c("验收面积(亩)", "accepted_area", NUM), _c("验收文号", "document_ref"),
))


def reclamation_row(rc: Reclamation) -> list[str]:
    return [rc.project_id, rc.name, rc.county_code, rc.township_code, format_amount(rc.area, 4), d(rc.registered_on),
            d(rc.accepted_on), "" if rc.accepted_area is None else format_amount(rc.accepted_area, 4),
            rc.document_ref if rc.accepted_on else ""]


def _approval_table(dept: str, title: str) -> Table:
    return Table(f"approvals_{dept}", dept, "approvals", title, (
        _c("项目编号", "project_id"), _c("申请编号", "request_id"), _c("县区代码", "county_code"),
        _c("审批类型", "kind"), _c("批复文号", "document_ref"), _c("批复日期", "granted_on"),
    ))


APPROVALS = {
    ECOLOGY: _approval_table(ECOLOGY, "环评批复"),
    DEV_REFORM: _approval_table(DEV_REFORM, "节能审查"),
    NATURAL_RESOURCES: _approval_table(NATURAL_RESOURCES, "用地批复"),
}


def approval_row(a: Approval) -> list[str]:
    return [a.project_id, a.request_id, a.county_code, a.kind, a.document_ref, d(a.granted_on)]


# -- county: projects, requests, agreements, prices, geography ------------------------------------------------

_NEEDS = (("COD", "化学需氧量"), ("NH3N", "氨氮"), ("SO2", "二氧化硫"), ("NOX", "氮氧化物"), ("VOCS", "挥发性有机物"))
PROJECTS = Table("projects", COUNTY, "projects", "项目准入申请", (
    _c("项目编号", "project_id"), _c("项目名称", "name"), _c("县区代码", "county_code"),
    _c("申请单位统一社会信用代码", "applicant_credit_code"), _c("申请单位名称", "applicant_name"),
    _c("园区编号", "park_id"), _c("是否入园", "in_park_or_cluster"), _c("用地面积(亩)", "land", NUM),
    _c("固定资产投资(元)", "investment", NUM), _c("预计年税收(元)", "expected_yearly_tax", NUM),
    _c("年综合能耗(吨标准煤)", "energy_need", NUM),
    *(_c(f"{cn}排放需求(吨)", f"emission_needs.{a}", NUM) for a, cn in _NEEDS),
    _c("行业代码", "industry_code"), _c("是否两高", "two_high"), _c("列入安全环保整治名单", "on_safety_or_env_list"),
    _c("申报日期", "submitted_on"),
))


def project_row(p: Project) -> list[str]:
    return [p.project_id, p.name, p.county_code, p.applicant_credit_code, p.applicant_name, p.park_id or "",
            yes(p.in_park_or_cluster), format_amount(p.land, 4), money(p.investment), money(p.expected_yearly_tax),
            format_amount(p.energy_need, 3),
            *(amount(a, p.emission_needs[a]) if a in p.emission_needs else "" for a, _ in _NEEDS),
            p.industry_code, yes(p.two_high), yes(p.on_safety_or_env_list), d(p.submitted_on)]


QUOTA_REQUESTS = Table("quota_requests", COUNTY, "quota_requests", "指标申请", (
    _c("申请编号", "request_id"), _c("项目编号", "project_id"), _c("县区代码", "county_code"),
    _c("申请时间", "requested_at"), _c("指标类型", "lines.asset"), _c("申请数量", "lines.amount", NUM),
    _c("计量单位", "unit"), _c("确认审批类型", "lines.approval_kind"),
))


def request_rows(q: QuotaRequest) -> Iterable[list[str]]:
    for line in q.lines:
        yield [q.request_id, q.project_id, q.county_code, q.requested_at.isoformat(), line.asset,
               amount(line.asset, line.amount), ASSET_UNIT[line.asset], line.approval_kind]


AGREEMENTS = Table("agreements", COUNTY, "agreements", "税收分成协议", (
    _c("协议编号", "agreement_id"), _c("版本", "version", NUM), _c("生效日期", "effective_from"),
    _c("县区代码", "county_code"), _c("企业统一社会信用代码", "enterprise"), _c("流出方", "origin"),
    _c("流入方", "destination"), _c("增值税地方留成(基点)", "local_shares_bp.VAT", NUM),
    _c("企业所得税地方留成(基点)", "local_shares_bp.CIT", NUM), _c("分成方案", "schedule"),
    _c("起始日期", "start"), _c("终止日期", "end"), _c("尾差归属", "remainder_to"),
    _c("保底金额(元)", "guaranteed_minimum", NUM), _c("统计分成比例", "statistics_weights"),
    _c("项目编号", "project_id"), _c("签订日期", "signed_on"),
))


def schedule_text(a: Agreement) -> str:
    """'1-3:6:4;4-:5:5' = years 1 to 3 origin:destination 6:4, from year 4 on 5:5."""
    return ";".join(f"{s.first_year}-{'' if s.last_year is None else s.last_year}:{s.origin_weight}:{s.destination_weight}"
                    for s in a.schedule)


def agreement_row(a: Agreement) -> list[str]:
    return [a.agreement_id, str(a.version), d(a.effective_from), a.county_code, a.enterprise, a.origin, a.destination,
            str(a.local_shares_bp["VAT"]), str(a.local_shares_bp["CIT"]), schedule_text(a), d(a.start), d(a.end),
            a.remainder_to, "" if a.guaranteed_minimum_fen is None else money(a.guaranteed_minimum_fen),
            "" if a.statistics_weights is None else ":".join(map(str, a.statistics_weights)), a.project_id or "",
            d(a.signed_on)]


TAX_RECEIPTS = Table("tax_receipts", TAX, "tax_receipts", "税收入库明细", (
    _c("完税凭证号", "receipt_id"), _c("统一社会信用代码", "enterprise_credit_code"), _c("税款所属期", "month"),
    _c("税种", "tax_kind"), _c("金额(元)", "amount", NUM), _c("更正收据", "corrects"),
    _c("入库日期", "reported_on"),
))


def receipt_row(t: TaxReceipt) -> list[str]:
    return [t.receipt_id, t.enterprise_credit_code, t.month, t.tax_kind, money(t.amount), t.corrects or "",
            d(t.reported_on)]


PRICES = Table("price_list", COUNTY, "price_list", "指标有偿使用价格", (
    _c("县区代码", "county_code"), _c("指标类型", "asset"), _c("计量单位", "unit"),
    _c("单价(元)", "price_per_unit", NUM), _c("执行日期", "effective_from"),
))


def price_row(p: Price) -> list[str]:
    return [p.county_code, p.asset, p.unit, money(p.price_fen), d(p.effective_from)]


TOWNSHIPS = Table("townships", COUNTY, "townships", "乡镇", (
    _c("县区代码", "county_code"), _c("县区名称", "county_name"), _c("乡镇代码", "township_code"),
    _c("乡镇名称", "township_name"),
))
PARKS = Table("parks", COUNTY, "parks", "园区与集聚区", (
    _c("县区代码", "county_code"), _c("园区编号", "park_id"), _c("园区名称", "name"),
    _c("所在乡镇代码", "township_code"), _c("类型", "kind"),
))


def township_rows(c: County) -> Iterable[list[str]]:
    for t in c.townships:
        yield [c.code, c.name, t.code, t.name]


def park_rows(c: County) -> Iterable[list[str]]:
    for p in c.parks:
        yield [c.code, p.park_id, p.name, p.township_code, p.kind]


ALL_TABLES: tuple[Table, ...] = (
    REGISTER, *INDICATORS.values(), EXITS, *RELEASES.values(), RECLAMATION, *APPROVALS.values(), PROJECTS,
    QUOTA_REQUESTS, AGREEMENTS, TAX_RECEIPTS, PRICES, TOWNSHIPS, PARKS,
)
TABLES = {t.key: t for t in ALL_TABLES}
