"""Amounts out: integers of the smallest unit -> decimal strings in the asset's unit, fen -> CNY."""
from __future__ import annotations

from shared.amounts import format_amount
from services.quota.domain.assets import ASSETS, MONEY_SCALE


def qty(asset: str, units: int) -> str:
    return format_amount(units, ASSETS[asset].scale)


def cny(fen: int) -> str:
    return format_amount(fen, MONEY_SCALE)


def cny_or_none(fen: int | None) -> str | None:
    return None if fen is None else cny(fen)
