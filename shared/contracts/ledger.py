"""Ledger contracts: the command other services send it, and what it says happened.

Amounts are decimal strings in the asset's display unit ('1.2500' t of COD, '300.00' CNY).
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.contracts import topics
from shared.contracts.types import DecimalStr, Identifier, at_most
from shared.envelope import Event, register

AccountFlag = Literal["debits_must_not_exceed_credits", "credits_must_not_exceed_debits", "closed"]


class AccountSpec(BaseModel):
    """An account to open if it does not exist (insert-or-ignore); flags default by address kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: Identifier = Field(examples=["county:320612/pool/COD"])
    asset: Identifier = Field(examples=["COD"])
    address: str = Field(min_length=3, max_length=200, examples=["county:320612/pool"])
    flags: list[AccountFlag] | None = Field(default=None, max_length=10)


class TransferSpec(BaseModel):
    """One transfer as callers describe it (TigerBeetle semantics, see the ledger README section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transfer_id: Identifier = Field(examples=["release-REL-001"])
    debit_account: str = Field(default="", max_length=200, examples=["external:rights-register/COD"])
    credit_account: str = Field(default="", max_length=200, examples=["county:320612/pool/COD"])
    asset: Identifier = Field(examples=["COD"])
    amount: DecimalStr = Field(description="'0' on a post means the full pending amount")
    code: str = Field(default="", max_length=100, examples=["quota.release"])
    pending: bool = False
    timeout_seconds: int = Field(default=0, ge=0, le=10 * 365 * 86400)
    post_pending_id: str = Field(default="", max_length=200)
    void_pending_id: str = Field(default="", max_length=200)
    linked: bool = False
    refs: list[Annotated[str, StringConstraints(max_length=200)]] = Field(default_factory=list, max_length=20)
    metadata: Annotated[dict[Annotated[str, StringConstraints(max_length=100)],
                             Annotated[str, StringConstraints(max_length=1000)]], at_most(50)] = \
        Field(default_factory=dict, max_length=50)


@register
class TransfersRequested(Event):
    """A command to the ledger on ``countypool.ledger.commands``: a batch (or linked chain) of transfers,
    applied in order in one go, after opening any listed accounts that do not exist yet."""

    name = "TransfersRequested"
    topic = topics.LEDGER_COMMANDS
    aggregate_type = "transfer-batch"

    transfers: list[TransferSpec] = Field(min_length=1, max_length=10_000)
    open_accounts: list[AccountSpec] = Field(default_factory=list, max_length=10_000)


class _Outcome(Event):
    topic = topics.LEDGER_EVENTS
    aggregate_type = "transfer"

    transfer_id: str
    debit_account: str
    credit_account: str
    asset: str
    amount: DecimalStr
    code: str
    pending_id: str = Field(default="", description="for a post or void: the pending transfer it resolves")
    refs: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    at: datetime


@register
class TransferPosted(_Outcome):
    name = "TransferPosted"


@register
class TransferPending(_Outcome):
    name = "TransferPending"
    expires_at: datetime | None = None


@register
class TransferVoided(_Outcome):
    name = "TransferVoided"


@register
class TransferExpired(_Outcome):
    name = "TransferExpired"


@register
class TransferRejected(_Outcome):
    name = "TransferRejected"
    reason: str = Field(description="machine-readable result, e.g. exceeds_credits")


@register
class AccountOpened(Event):
    name = "AccountOpened"
    topic = topics.LEDGER_EVENTS
    aggregate_type = "account"

    account_id: str
    asset: str
    address: str
    flags: list[AccountFlag] = Field(default_factory=list)
