"""HTTP schemas of the settlement finance API (pydantic: the OpenAPI document and its examples come from here).

Money is a decimal string in yuan with two decimals ('1234.56'), never a float. Shares are integer basis points
(5000 = 50%); split weights are small integers (6:4). Parties are strings: ``township:<region code>``,
``park:<id>``, ``enterprise:<credit code>``, ``project:<id>``, ``county:<code>/fund``.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.types import DecimalStr, Identifier

CreditCode = str
COUNTY_PATTERN = r"^[0-9]{6}$"
CREDIT_CODE_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{18}$"
ORIGIN_DESTINATION_PATTERN = r"^(township:[0-9]{9}([0-9]{3})?|park:[A-Za-z0-9][A-Za-z0-9_.\-]{0,99})$"
PARTY_PATTERN = r"^(township:[0-9]{9}([0-9]{3})?|park:[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}|county:[0-9]{6}/(fund|treasury))$"
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- agreements -------------------------------------------------------------------------------------------

class TaxShare(Strict):
    tax_kind: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", examples=["VAT"])
    local_share_bp: int = Field(ge=0, le=10_000, description="local retained share in basis points (VAT 5000 = 50%)")


class ScheduleStepIn(Strict):
    from_year: int = Field(ge=1, description="first agreement year of this step (year 1 = the first 12 months)")
    to_year: int | None = Field(default=None, ge=1, description="last agreement year; null: to the end")
    origin_weight: int = Field(ge=0)
    destination_weight: int = Field(ge=0)


class StatisticsSplit(Strict):
    origin_weight: int = Field(ge=0)
    destination_weight: int = Field(ge=0)


_AGREEMENT_EXAMPLE = {
    "agreement_id": "FD-2026-001", "county_code": "320612", "enterprise_credit_code": "91320612MA1W2B3C4M",
    "project_id": "PRJ-2026-07", "origin": "township:320612101", "destination": "park:P01",
    "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}, {"tax_kind": "CIT", "local_share_bp": 4000}],
    "schedule": [{"from_year": 1, "to_year": 3, "origin_weight": 6, "destination_weight": 4},
                 {"from_year": 4, "to_year": None, "origin_weight": 5, "destination_weight": 5}],
    "start": "2026-01-01", "end": "2030-12-31", "guaranteed_minimum": "200000.00",
    "statistics_split": {"origin_weight": 5, "destination_weight": 5}, "remainder_to": "destination",
}


class AgreementTerms(Strict):
    """The full terms of one version (an amendment repeats every term, changed or not)."""

    enterprise_credit_code: CreditCode = Field(pattern=CREDIT_CODE_PATTERN, examples=["91320612MA1W2B3C4M"])
    project_id: str | None = Field(default=None, max_length=200)
    origin: str = Field(pattern=ORIGIN_DESTINATION_PATTERN, description="the township (or park) the enterprise left",
                        examples=["township:320612101"])
    destination: str = Field(pattern=ORIGIN_DESTINATION_PATTERN, description="where it now pays tax", examples=["park:P01"])
    taxes: list[TaxShare] = Field(min_length=1, max_length=20)
    schedule: list[ScheduleStepIn] = Field(min_length=1, max_length=50, description="origin:destination by agreement year")
    start: date = Field(description="first day of a month")
    end: date = Field(description="last day of a month")
    effective_from: date | None = Field(default=None, description="first day of a month; defaults to start (v1)")
    guaranteed_minimum: DecimalStr | None = Field(default=None, description="CNY per agreement year owed to the origin")
    minimum_payer: str | None = Field(default=None, pattern=PARTY_PATTERN, description="who tops up (not the origin); default destination")
    statistics_split: StatisticsSplit | None = None
    remainder_to: Literal["origin", "destination"] = Field(default="destination", description="who takes split remainders")
    version: int | None = Field(default=None, ge=1, description="optional: makes a retry idempotent")


class AgreementIn(AgreementTerms):
    # one path segment of /v1/agreements/{agreement_id}: an id with '/' was stored and could never be read or amended
    agreement_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$",
                              examples=["FD-320612-0001"])
    county_code: str = Field(pattern=COUNTY_PATTERN)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_AGREEMENT_EXAMPLE]})


class AmendmentIn(AgreementTerms):
    effective_from: date = Field(description="first day of the first month the new terms apply to")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        **{k: v for k, v in _AGREEMENT_EXAMPLE.items() if k not in ("agreement_id", "county_code")},
        "effective_from": "2027-01-01",
        "schedule": [{"from_year": 1, "to_year": None, "origin_weight": 5, "destination_weight": 5}]}]})


class AgreementVersionOut(Strict):
    version: int
    effective_from: date
    enterprise_credit_code: str
    project_id: str | None
    origin: str
    destination: str
    taxes: list[TaxShare]
    schedule: list[ScheduleStepIn]
    start: date
    end: date
    guaranteed_minimum: str | None
    minimum_payer: str | None
    statistics_split: StatisticsSplit | None
    remainder_to: str
    recorded_at: datetime
    recorded_by: str


class AgreementOut(Strict):
    agreement_id: str
    county_code: str
    versions: list[AgreementVersionOut]
    created: bool = Field(default=False, description="true when this request stored a new version")


class AgreementList(Strict):
    agreements: list[AgreementOut]
    next_after: str | None = Field(description="pass as after= for the next page; null at the end")


# -- policy -------------------------------------------------------------------------------------------------

class PolicyIn(Strict):
    policy_id: Identifier | None = Field(default=None, description="the county's document reference")
    compensation_bp: int = Field(ge=0, le=10_000, description="share of quota proceeds compensating the enterprises "
                                 "that freed the consumed lots (腾退补偿), basis points")
    township_weight: int = Field(ge=0, le=1_000_000, description="the rest is shared per unit consumed: origin townships :")
    park_weight: int = Field(ge=0, le=1_000_000, description="destination park :")
    fund_weight: int = Field(ge=0, le=1_000_000, description="county fund")
    effective_from: date | None = Field(
        default=None, description="first day of the first month whose allocations this version splits (by the "
        "allocation's date), until a later-dated version takes effect; not in or before a finalized period unless "
        "before the earliest version (months no version splits). Default: "
        "from the beginning for the county's first version, the first day of the current month (China time) for a "
        "later one")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "policy_id": "TZBF-2026-12", "compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3,
        "effective_from": "2027-01-01"}]})


class PolicyOut(Strict):
    county_code: str
    version: int
    policy_id: str
    compensation_bp: int
    township_weight: int
    park_weight: int
    fund_weight: int
    effective_from: date | None = Field(description="first day of the first month whose allocations it splits; "
                                        "null: from the beginning")
    recorded_at: datetime
    recorded_by: str
    remainders: str = Field(description="who takes each rounding remainder")


class PolicyVersionList(Strict):
    county_code: str
    versions: list[PolicyOut] = Field(description="by version; each splits the allocations made from its "
                                      "effective_from until the next later-dated one's (of a month's two, the later)")


# -- receipts and statistics -----------------------------------------------------------------------------------

class TaxReceiptIn(Strict):
    receipt_id: Identifier
    enterprise_credit_code: CreditCode = Field(min_length=18, max_length=18)
    month: str = Field(pattern=MONTH_PATTERN, description="the tax period the tax belongs to")
    tax_kind: str = Field(min_length=1, max_length=40, pattern=r"^[^\s\x00-\x1f\x7f]+$", examples=["VAT"])
    amount: DecimalStr = Field(description="CNY paid; a correction gives the new full amount")
    corrects: Identifier | None = Field(default=None, description="the receipt this one replaces")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "receipt_id": "TAX-2026-03-000123", "enterprise_credit_code": "91320612MA1W2B3C4M", "month": "2026-03",
        "tax_kind": "VAT", "amount": "1250000.00"}]})


class TaxReceiptOut(Strict):
    receipt_id: str
    enterprise_credit_code: str
    month: str
    tax_kind: str
    amount: str
    corrects: str | None
    replaced_amount: str | None
    corrected_by: str | None
    received_at: datetime
    channel: str
    created: bool = Field(default=False, description="false when an identical receipt was already recorded")


class TaxReceiptList(Strict):
    receipts: list[TaxReceiptOut]
    next_after: str | None


class WaitingInputOut(Strict):
    kind: Literal["tax_receipt", "statistics_report"]
    input_id: str = Field(description="the receipt's or report's id")
    enterprise_credit_code: str
    waiting_since: datetime = Field(description="when it came from the intake topic, its enterprise not known yet")
    content: dict = Field(description="the event's data as it came (a TaxReceiptReported or StatisticsReported)")
    state: Literal["waiting", "refused"] = Field(description="refused: taking it in failed once its enterprise was "
                                                             "known (reason below); it stays listed, never applied")
    refused_reason: str | None = None
    refused_message: str | None = None
    refused_at: datetime | None = None


class WaitingInputList(Strict):
    inputs: list[WaitingInputOut]
    next_after: str | None = Field(description="pass as `after` for the next page (`<kind>/<input_id>`)")


class RowProblem(Strict):
    row: int = Field(description="spreadsheet row number (the header is row 1)")
    receipt_id: str | None
    reason: str
    message: str


class ImportReport(Strict):
    rows: int
    recorded: int
    unchanged: int = Field(description="identical to a receipt already recorded")
    rejected: list[RowProblem]


class StatisticsReportIn(Strict):
    report_id: Identifier
    enterprise_credit_code: CreditCode = Field(min_length=18, max_length=18)
    month: str = Field(pattern=MONTH_PATTERN)
    measure: Literal["value_added", "output"]
    amount: DecimalStr = Field(description="CNY")


class StatisticsReportOut(Strict):
    report_id: str
    enterprise_credit_code: str
    month: str
    measure: str
    amount: str
    received_at: datetime
    created: bool


# -- statements ---------------------------------------------------------------------------------------------

class FinalizeIn(Strict):
    expected_content_hash: str | None = Field(default=None, min_length=64, max_length=64, description=(
        "the hash of the draft that was reviewed: finalizing is refused (409 content_changed) if the inputs "
        "changed since"))


class PolicyRef(Strict):
    id: str
    version: int


class RejectedPosting(Strict):
    line_no: int
    transfer_id: str
    reason: str | None = Field(description="the ledger's, e.g. exceeds_credits")


class PostingStatus(Strict):
    requested: int = 0
    posted: int = 0
    rejected: int = 0
    rejected_lines: list[RejectedPosting] = Field(
        default_factory=list, description="the first 20 lines the ledger refused, with its reason (a failed transfer "
                                          "id stays failed: a correction is posted under another id)")


class StatementSummary(Strict):
    statement_id: str = Field(examples=["320612/2026-03"])
    county_code: str
    period: str
    period_start: date
    period_end: date
    status: Literal["draft", "finalized"]
    as_of: datetime = Field(description="facts received after this are not in the statement (the cut-off once final)")
    finalized_at: datetime | None
    content_hash: str = Field(description="sha256 of the canonical lines and totals; same inputs, same hash")
    line_count: int
    money_total: str = Field(description="sum of money lines, CNY")
    unmatched_receipts: int = Field(description="receipts of the county's enterprises no agreement shares")
    policy: PolicyRef
    postings: PostingStatus | None = Field(default=None, description="ledger postings of a finalized statement")


class LineOut(Strict):
    line_no: int
    kind: str = Field(examples=["revenue_share"])
    payer: str
    payee: str
    amount: str = Field(description="CNY; for statistics_share lines the shared statistic, not money")
    agreement_id: str | None
    agreement_version: int | None
    tax_kind: str | None
    month: str | None = Field(description="month of the facts behind the line")
    agreement_year: int | None
    adjusts: str | None
    measure: str | None
    allocation_id: str | None
    sources: list[str] = Field(description="ids of the events behind the line (the smallest, when capped)")
    source_count: int


class PartyTotalOut(Strict):
    party: str
    receivable: str
    payable: str
    net: str


class StatisticsTotalOut(Strict):
    party: str
    measure: str
    gained: str
    ceded: str


class StatementPage(StatementSummary):
    totals: list[PartyTotalOut] = Field(description="per party (the filtered party only, with ?party=)")
    statistics_totals: list[StatisticsTotalOut]
    lines: list[LineOut]
    matching_lines: int = Field(description="lines matching the filters, over all pages")
    next_after_line: int | None = Field(description=(
        "pass as after_line for the next page; null at the end. Each page is one moment of the statement (header, "
        "totals and lines agree); a draft re-run between two pages may change it: when a page's content_hash differs "
        "from the first page's, start again from the first page (or read the export, one moment throughout)"))


class PeriodsOut(Strict):
    county_code: str
    last_closed: str | None
    next_to_close: str | None = Field(description="the month after the last closed period (any kind may follow)")
    statements: list[StatementSummary]


class PositionPeriod(Strict):
    period: str
    status: str
    receivable: str
    payable: str
    net: str
    cumulative_finalized_net: str = Field(description="net over finalized periods up to and including this one")


class PartyPosition(Strict):
    county_code: str
    party: str
    periods: list[PositionPeriod]
    finalized_receivable: str
    finalized_payable: str
    finalized_net: str


class CompensationLine(Strict):
    county_code: str
    period: str
    status: str
    line_no: int
    kind: Literal["compensation", "buyback"]
    payer: str
    amount: str
    allocation_id: str | None
    month: str | None
    sources: list[str] = Field(description="the allocation and the consumed lots this enterprise freed")


class CompensationOut(Strict):
    enterprise_credit_code: str
    lines: list[CompensationLine]
    finalized_total: str
    draft_total: str = Field(description="each allocation or buy-back once, as the latest draft holding it computes "
                                         "it (a month and its quarter may both be drafted)")
