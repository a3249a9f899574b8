"""Recording revenue-sharing agreements and their amendments.

Every version carries the full terms; an amendment applies from its ``effective_from``. Before a version is
stored, it is checked with every other agreement of the same enterprise (in any county) in one ``AgreementBook``,
so two agreements sharing the same tax of the same month are refused (``overlapping_agreements``). A version that
would change the terms of a month already in a finalized statement is refused too — an amendment from its
``effective_from``, where it ends the previous version, even when its own terms start later: finalized periods are
immutable, so the change must start in the first open month.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.settlement.intake import remember_enterprises
from services.settlement.domain import AgreementBook, AgreementError, RevenueSharingAgreement
from services.settlement.storage.inputs import InputsRepository, agreement_from_row
from services.settlement.storage.locks import hold_county, hold_enterprise
from services.settlement.storage.statements import StatementsRepository


def _changes_from(agreement: RevenueSharingAgreement, *, amendment: bool):
    """The first month whose terms the version changes. A first version applies from its start; an amendment ends
    the previous version at its ``effective_from`` (``AgreementBook``), whatever its own start."""
    return agreement.effective_from if amendment else max(agreement.effective_from, agreement.start)


def record_version(session: Session, terms: dict[str, Any], county: str, *, version: int | None, amendment: bool,
                   by: str, now: datetime) -> tuple[RevenueSharingAgreement, str, bool]:
    """Store one version; returns (agreement, county, created). ``terms`` are the constructor arguments of
    ``RevenueSharingAgreement`` without ``version``. Re-sending an identical version is not an error."""
    inputs = InputsRepository(session)
    agreement_id = terms["agreement_id"]
    rows = inputs.agreement_rows(agreement_id)
    # Both checks below read what other transactions commit, so they hold locks until this one ends (PostgreSQL
    # reads committed data: without them, a finalization that read the agreements before this version commits
    # would settle a period this version then re-terms — a later late receipt re-splitting that finalized month
    # by the new terms — and two agreements of one enterprise recorded side by side, e.g. in two counties, would
    # each pass the overlap check and both counties settle the same tax). The county lock is the one draft and
    # finalize hold; the rows are read again under the locks.
    held = rows[0].county_code if amendment and rows else county
    hold_county(session, held)
    hold_enterprise(session, terms["enterprise"])
    rows = inputs.agreement_rows(agreement_id)
    if amendment and rows and rows[0].county_code != held:
        # version 1 committed between the two reads: the county is known only now (taken after the enterprise's
        # lock, it can deadlock with another version of this enterprise's agreements; that is retried as any other)
        hold_county(session, rows[0].county_code)
    known = [agreement_from_row(r) for r in rows]
    if amendment:
        if not rows:
            raise AgreementError("agreement_not_found", f"no agreement {agreement_id!r} to amend")
        county = rows[0].county_code
        version = version or known[-1].version + 1
    else:
        if rows and rows[0].county_code != county:
            raise AgreementError("agreement_exists", f"agreement {agreement_id} exists in county {rows[0].county_code}")
        version = version or 1
        if version != 1:
            raise AgreementError("version_conflict", "a new agreement starts at version 1; amend it for later versions")
    agreement = RevenueSharingAgreement(version=version, **terms)
    if not amendment and agreement.effective_from > agreement.end:
        # it would govern no month (its enterprise's tax unmatched), and no amendment could start before it (an
        # amendment may take effect after its end: it ends the version before it there)
        raise AgreementError("effective_from_after_end",
                             f"agreement {agreement.ref} takes effect on {agreement.effective_from}, after its end {agreement.end}")
    same = next((k for k in known if k.version == version), None)
    if same is not None:
        if same == agreement:
            return same, county, False
        raise AgreementError("version_conflict" if amendment else "agreement_exists",
                             f"agreement {agreement.ref} already exists with other terms")
    if known and version != known[-1].version + 1:
        raise AgreementError("version_conflict", f"the next version of {agreement_id} is {known[-1].version + 1}, not {version}")
    if known and agreement.start != known[-1].start and any(k.guaranteed_minimum_fen is not None for k in known):
        # The start counts the agreement's years, and what is settled of a year's guaranteed minimum is kept by
        # that count: restarted, the new year 1 would be topped up less what the old year 1 was.
        raise AgreementError("agreement_start_changed",
                             f"agreement {agreement_id} started on {known[-1].start} with a guaranteed minimum by its "
                             "years: an amendment keeps the start (end this agreement and record a new one instead)")

    closed = StatementsRepository(session).finalized_headers(county)
    if closed:
        last_end = closed[-1].period_end
        changes_from = _changes_from(agreement, amendment=bool(known))
        if changes_from <= last_end:
            raise AgreementError(
                "effective_in_closed_period",
                f"agreement {agreement.ref} would change the terms from {changes_from}, but {closed[-1].period} "
                f"(to {last_end}) is finalized; let it take effect in the first open month",
            )
    # the whole picture of this enterprise's sharing, with the new version in it
    others = {(a.agreement_id, a.version): a for a in inputs.agreements_of_enterprise(agreement.enterprise)}
    others.update({(a.agreement_id, a.version): a for a in known})
    AgreementBook([*others.values(), agreement])

    inputs.add_agreement(agreement, county, by, now)
    remember_enterprises(session, [(agreement.enterprise, county, None)], "agreement", now)
    return agreement, county, True
