"""Bodies of what goes over HTTP (no intake topic carries it). Amounts are decimal strings in the
asset's display unit (亩, tce, t) or CNY; dates ISO. Shapes are documented in README.md."""
from __future__ import annotations

from typing import Any

from shared.amounts import format_amount

from .geography import County
from .model import ASSET_UNIT, Agreement, EnterpriseRecord, Price, Project, QuotaRequest, Reclamation
from .tables import amount, money


def county_body(c: County) -> dict[str, Any]:
    return {
        "county_code": c.code, "name": c.name,
        "townships": [{"township_code": t.code, "name": t.name} for t in c.townships],
        "parks": [{"park_id": p.park_id, "name": p.name, "township_code": p.township_code, "kind": p.kind}
                  for p in c.parks],
    }


def exit_body(e: EnterpriseRecord, decided_by: str) -> dict[str, Any]:
    """A disposition decided and carried out (关闭退出 / 转型转移). Assessment takes it in two steps:
    the decision {credit_code, year, decided, decided_by, reason} and its execution {effective_on,
    to_park_id, note}; it then publishes EnterpriseExited / EnterpriseRelocated."""
    return {
        "credit_code": e.credit_code, "county_code": e.county_code, "year": e.year, "decided": e.disposition,
        "decided_by": decided_by, "reason": e.exit_reason, "from_township_code": e.township_code,
        "effective_on": e.effective_on.isoformat() if e.effective_on else None,
        "to_park_id": e.to_park_id if e.disposition == "relocate" else None,
    }


def reclamation_body(rc: Reclamation) -> dict[str, Any]:
    """Registration of a 增减挂钩 project (before its acceptance arrives as ReclamationAccepted)."""
    return {"project_id": rc.project_id, "county_code": rc.county_code, "township_code": rc.township_code,
            "area": format_amount(rc.area, 4), "registered_on": rc.registered_on.isoformat()}


def project_body(p: Project, year: int) -> dict[str, Any]:
    """A new project's application for admission (assessment: ProjectApplication; ``year`` is the
    policy year). Name, applicant name and date are in county/projects.csv."""
    return {
        "project_id": p.project_id, "county_code": p.county_code, "year": year,
        "applicant_credit_code": p.applicant_credit_code,
        "park_id": p.park_id, "in_park_or_cluster": p.in_park_or_cluster,
        "land": format_amount(p.land, 4), "investment": money(p.investment),
        "expected_yearly_tax": money(p.expected_yearly_tax), "energy_need": format_amount(p.energy_need, 3),
        "emission_needs": {a: amount(a, v) for a, v in p.emission_needs.items()},
        "industry_code": p.industry_code, "two_high": p.two_high,
        "on_safety_or_env_list": p.on_safety_or_env_list,
    }


def request_body(q: QuotaRequest) -> dict[str, Any]:
    """When to send it (``requested_at``) is in county/quota_requests.csv."""
    return {
        "request_id": q.request_id, "project_id": q.project_id, "county_code": q.county_code,
        "lines": [{"asset": l.asset, "amount": amount(l.asset, l.amount), "approval_kind": l.approval_kind}
                  for l in q.lines],
    }


def agreement_body(a: Agreement) -> dict[str, Any]:
    """One version of a revenue-sharing agreement, in the settlement API's terms (AgreementIn; a
    version > 1 is an amendment: the same terms without agreement_id and county_code, posted to
    the agreement's versions). The signing date is in county/agreements.csv."""
    return {
        "agreement_id": a.agreement_id, "county_code": a.county_code, "version": a.version,
        "effective_from": a.effective_from.isoformat(), "enterprise_credit_code": a.enterprise,
        "project_id": a.project_id, "origin": a.origin, "destination": a.destination,
        "taxes": [{"tax_kind": k, "local_share_bp": bp} for k, bp in a.local_shares_bp.items()],
        "schedule": [{"from_year": s.first_year, "to_year": s.last_year, "origin_weight": s.origin_weight,
                      "destination_weight": s.destination_weight} for s in a.schedule],
        "start": a.start.isoformat(), "end": a.end.isoformat(),
        "guaranteed_minimum": None if a.guaranteed_minimum_fen is None else money(a.guaranteed_minimum_fen),
        "minimum_payer": None,
        "statistics_split": None if a.statistics_weights is None else {
            "origin_weight": a.statistics_weights[0], "destination_weight": a.statistics_weights[1]},
        "remainder_to": "destination" if a.remainder_to == a.destination else "origin",
    }


def price_list_body(county_code: str, prices: list[Price]) -> dict[str, Any]:
    """The county's 有偿使用 price per asset, CNY per display unit (``prices`` is the quota policy's
    ``prices`` field as is)."""
    return {
        "county_code": county_code, "currency": "CNY", "effective_from": prices[0].effective_from.isoformat(),
        "prices": {p.asset: money(p.price_fen) for p in prices},
        "units": {p.asset: ASSET_UNIT[p.asset] for p in prices},
    }
