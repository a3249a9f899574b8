"""Intake events as the departments publish them: contract payloads wrapped by ``new_envelope``.

Ids are uuid5 of (seed, size, event name, entity key), so re-generating gives the same ids (and a
consumer's idempotency sees a re-feed as duplicates). ``time`` is the business moment (the release
date, the receipt's report date ...) at 09:00 China time; ``recordedat`` is left to the receiver.
"""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Iterator

from shared.contracts import topics
from shared.contracts.assessment import EnterpriseReported, IndicatorsReported
from shared.contracts.quota import ApprovalGranted, QuotaReleaseSubmitted, ReclamationAccepted
from shared.contracts.settlement import TaxReceiptReported
from shared.envelope import Envelope, Event, new_envelope

from .county import CST
from .model import (
    DEPARTMENTS, INDUSTRY, NATURAL_RESOURCES, SOURCE, TAX, Approval, EnterpriseRecord, Reclamation, Release, TaxReceipt,
)
from .rng import event_id
from .tables import amount, format_amount, indicator_fields, money

PRODUCER = "ops.generator"
INTAKE_TOPICS = (topics.INTAKE_ASSESSMENT, topics.INTAKE_QUOTA, topics.INTAKE_SETTLEMENT)
# Day of the data year's following February/March each department hands its indicators over.
_INDICATOR_DAY = {INDUSTRY: (2, 20), TAX: (2, 15), "development_reform": (2, 25), "ecology": (3, 5),
                  NATURAL_RESOURCES: (3, 10)}


def at(d: date, hour: int = 9) -> datetime:
    return datetime.combine(d, time(hour, 0), CST)


class EventFactory:
    def __init__(self, seed: int, size: str, year: int):
        self.seed, self.size, self.year = seed, size, year

    def wrap(self, event: Event, *, subject: str, department: str, key: str, when: datetime) -> Envelope:
        env = new_envelope(event, subject=subject, source=SOURCE[department], producer=PRODUCER,
                           event_id=event_id(self.seed, self.size, event.name, key), time=when)
        return env.model_copy(update={"recordedat": None})

    # assessment intake ------------------------------------------------------------------------------
    def enterprise(self, e: EnterpriseRecord) -> Iterator[Envelope]:
        """EnterpriseReported (industry bureau), then one IndicatorsReported per department that reports."""
        yield self.wrap(EnterpriseReported(
            credit_code=e.credit_code, name=e.name, township_code=e.township_code, in_park=e.in_park,
            park_id=e.park_id, industry_code=e.industry_code, flags=list(e.flags), scale=e.scale,
        ), subject=e.credit_code, department=INDUSTRY, key=e.credit_code, when=at(date(e.year + 1, 1, 15)))
        for dept in DEPARTMENTS:
            fields = indicator_fields(dept, e)
            if not fields:
                continue
            m, dd = _INDICATOR_DAY[dept]
            yield self.wrap(IndicatorsReported(credit_code=e.credit_code, year=e.year, department=dept, fields=fields),
                            subject=e.credit_code, department=dept, key=f"{e.credit_code}/{e.year}/{dept}",
                            when=at(date(e.year + 1, m, dd)))

    # quota intake -----------------------------------------------------------------------------------
    def release(self, r: Release) -> Envelope:
        return self.wrap(QuotaReleaseSubmitted(
            release_id=r.release_id, enterprise_credit_code=r.enterprise_credit_code, township_code=r.township_code,
            county_code=r.county_code, asset=r.asset, amount=amount(r.asset, r.amount), reason=r.reason,
            basis=r.basis, buyback_price_per_unit=None if r.buyback_price_fen is None else money(r.buyback_price_fen),
            document_ref=r.document_ref, released_on=r.released_on,
        ), subject=r.release_id, department=r.department, key=r.release_id, when=at(r.released_on))

    def reclamation(self, rc: Reclamation) -> Envelope | None:
        if rc.accepted_on is None:
            return None
        return self.wrap(ReclamationAccepted(
            project_id=rc.project_id,
            accepted_area=None if rc.accepted_area is None else format_amount(rc.accepted_area, 4),
            accepted_on=rc.accepted_on, document_ref=rc.document_ref,
        ), subject=rc.project_id, department=NATURAL_RESOURCES, key=rc.project_id, when=at(rc.accepted_on))

    def approval(self, a: Approval) -> Envelope:
        return self.wrap(ApprovalGranted(project_id=a.project_id, kind=a.kind, document_ref=a.document_ref,
                                         granted_on=a.granted_on),
                         subject=a.project_id, department=a.department, key=f"{a.project_id}/{a.kind}",
                         when=at(a.granted_on))

    # settlement intake ------------------------------------------------------------------------------
    def receipt(self, t: TaxReceipt) -> Envelope:
        return self.wrap(TaxReceiptReported(
            receipt_id=t.receipt_id, enterprise_credit_code=t.enterprise_credit_code, month=t.month,
            tax_kind=t.tax_kind, amount=money(t.amount), corrects=t.corrects,
        ), subject=t.enterprise_credit_code, department=TAX, key=t.receipt_id, when=at(t.reported_on))

