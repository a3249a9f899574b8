"""Agreement schemas <-> domain terms (the API speaks yuan and roles, the domain fen and parties)."""
from __future__ import annotations

from services.settlement.api.schemas import AgreementOut, AgreementTerms, AgreementVersionOut, ScheduleStepIn, StatisticsSplit, TaxShare
from services.settlement.domain import AgreementError, RevenueSharingAgreement, ScheduleStep
from services.settlement.domain.export import yuan
from services.settlement.domain.limits import implausible
from services.settlement.storage.inputs import agreement_from_row
from services.settlement.storage.rows import from_db
from shared.amounts import AmountError, parse_amount


def terms_of(body: AgreementTerms, agreement_id: str) -> dict:
    """Constructor arguments of ``RevenueSharingAgreement`` except ``version``."""
    shares: dict[str, int] = {}
    for t in body.taxes:
        if t.tax_kind in shares:
            raise AgreementError("duplicate_tax_kind", f"tax kind {t.tax_kind} is listed twice")
        shares[t.tax_kind] = t.local_share_bp
    minimum = None
    if body.guaranteed_minimum is not None:
        try:
            minimum = parse_amount(body.guaranteed_minimum, 2, allow_zero=True)
        except AmountError as exc:
            raise AgreementError(exc.reason, f"guaranteed_minimum: {exc}") from None
        if (problem := implausible("guaranteed_minimum", minimum)) is not None:  # its top-up would break every draft
            raise AgreementError("amount_implausible", problem)
    return dict(
        agreement_id=agreement_id, effective_from=body.effective_from or body.start,
        enterprise=body.enterprise_credit_code, origin=body.origin, destination=body.destination,
        local_shares_bp=shares,
        schedule=tuple(ScheduleStep(s.from_year, s.to_year, s.origin_weight, s.destination_weight) for s in body.schedule),
        start=body.start, end=body.end, remainder_to=body.origin if body.remainder_to == "origin" else body.destination,
        guaranteed_minimum_fen=minimum, minimum_payer=body.minimum_payer,
        statistics_weights=(body.statistics_split.origin_weight, body.statistics_split.destination_weight)
        if body.statistics_split else None,
        project_id=body.project_id,
    )


def version_out(row) -> AgreementVersionOut:
    a: RevenueSharingAgreement = agreement_from_row(row)
    return AgreementVersionOut(
        version=a.version, effective_from=a.effective_from, enterprise_credit_code=a.enterprise, project_id=a.project_id,
        origin=a.origin, destination=a.destination,
        taxes=[TaxShare(tax_kind=k, local_share_bp=v) for k, v in a.local_shares_bp.items()],
        schedule=[ScheduleStepIn(from_year=s.first_year, to_year=s.last_year, origin_weight=s.origin_weight,
                                 destination_weight=s.destination_weight) for s in a.schedule],
        start=a.start, end=a.end,
        guaranteed_minimum=yuan(a.guaranteed_minimum_fen) if a.guaranteed_minimum_fen is not None else None,
        minimum_payer=a.minimum_payer,
        statistics_split=StatisticsSplit(origin_weight=a.statistics_weights[0], destination_weight=a.statistics_weights[1])
        if a.statistics_weights else None,
        remainder_to="origin" if a.remainder_to == a.origin else "destination",
        recorded_at=from_db(row.recorded_at), recorded_by=row.recorded_by,
    )


def agreement_out(rows: list, created: bool = False) -> AgreementOut:
    return AgreementOut(agreement_id=rows[0].agreement_id, county_code=rows[0].county_code,
                        versions=[version_out(r) for r in rows], created=created)
