"""What the assessment service tells the pool: which projects are admitted (and their facts for the
priority order), and which enterprises really left (so their held releases may enter the pool)."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from shared.amounts import round_half_up
from shared.contracts.assessment import EnterpriseExited, EnterpriseRelocated, ProjectEvaluated
from services.quota.application.intake import enterprise_departed
from services.quota.application.requests import admission_withdrawn
from services.quota.application.tx import Tx
from services.quota.storage import request_store
from services.quota.storage.sql import dumps


_BIGINT = 2**63 - 1


def _fen(cny: str | None) -> int | None:
    """Tax per 亩 in fen for the priority order; None (unknown: ordered last) for a figure no column holds, which
    only a project on a sliver of land reaches: the admission must still reach the pool."""
    try:
        fen = None if cny is None else round_half_up(Decimal(cny) * 100)
    except InvalidOperation:
        return None
    return fen if fen is None or -_BIGINT <= fen <= _BIGINT else None


def project_evaluated(tx: Tx, ev: ProjectEvaluated) -> None:
    """Latest evaluation wins; requests already open keep the facts they arrived with, except admission: once
    it is withdrawn they close (project_not_admitted), since quota goes to admitted projects only."""
    values = dict(
        project_id=ev.project_id, county_code=ev.county_code, applicant_credit_code=ev.applicant_credit_code,
        park_id=ev.park_id, admitted=ev.admitted, project_class=ev.project_class, tax_per_mu_fen=_fen(ev.tax_per_mu),
        industry_code=ev.industry_code or None, land_allowed=ev.land_quota_allowed,
        failures=dumps([f.code for f in ev.failures]), updated_at=tx.now)
    # before the row is written: an approval that found no row waits for it, or it for the approval (requests.py)
    request_store.lock_project(tx.session, ev.project_id)
    if ev.admitted:
        request_store.upsert_project(tx.session, values)
    else:
        admission_withdrawn(tx, ev.project_id, lambda: request_store.upsert_project(tx.session, values))


def enterprise_left(tx: Tx, ev: EnterpriseExited | EnterpriseRelocated) -> list[str]:
    how = "exited" if isinstance(ev, EnterpriseExited) else "relocated"
    return enterprise_departed(tx, ev.credit_code, ev.county_code, how, ev.effective_on)
