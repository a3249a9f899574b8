"""HTTP schemas of the ledger API (pydantic: the OpenAPI document is generated from these)."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.ledger import AccountFlag, AccountSpec, TransferSpec


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssetOut(Strict):
    code: str
    name: str
    unit: str
    scale: int = Field(description="smallest unit = 10^-scale of the display unit")


class OpenAccountsIn(Strict):
    accounts: list[AccountSpec] = Field(min_length=1, max_length=10_000)


class ItemResult(Strict):
    index: int
    id: str
    result: str = Field(description="ok, exists, or the machine-readable reason it failed")


class BatchResults(Strict):
    results: list[ItemResult]
    ok: bool = Field(description="true when every item is ok or exists")


class TransfersIn(Strict):
    transfers: list[TransferSpec] = Field(min_length=1, max_length=10_000)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"transfers": [{
        "transfer_id": "release-REL-2026-0001", "debit_account": "external:rights-register/COD",
        "credit_account": "county:320612/pool/COD", "asset": "COD", "amount": "12.5000", "code": "quota.release",
        "refs": ["REL-2026-0001"]}]}]})


class BalanceOut(Strict):
    account_id: str
    asset: str
    address: str
    flags: list[AccountFlag]
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    balance: str = Field(description="credits_posted - debits_posted")
    available: str = Field(description="balance - debits_pending (what may still be debited)")
    as_of_seq: int = Field(description="journal position the balance reflects")


class BalancesQuery(Strict):
    account_ids: list[str] = Field(min_length=1, max_length=1000)


class TransferOut(Strict):
    transfer_id: str
    debit_account: str
    credit_account: str
    asset: str
    amount: str
    code: str
    pending: bool
    timeout_seconds: int
    post_pending_id: str
    void_pending_id: str
    linked: bool
    refs: list[str]
    metadata: dict[str, str]
    timestamp: datetime
    status: str
    expires_at: datetime | None
    posted_amount: str | None = Field(description="pending transfers: how much their post posted")
    resolved_by: str
    resolved_at: datetime | None


class EntryOut(Strict):
    seq: int
    kind: str
    transfer_id: str
    recorded_at: datetime
    debits_pending: str = Field(description="change of this account's debits_pending")
    debits_posted: str
    credits_pending: str
    credits_posted: str
    hash: str


class EntriesPage(Strict):
    entries: list[EntryOut]
    next_after_seq: int | None = Field(description="pass as after_seq for the next page; null at the end")


class VerifyOut(Strict):
    ok: bool
    checked: int
    from_seq: int
    head_seq: int
    first_broken_seq: int | None
    reason: str
