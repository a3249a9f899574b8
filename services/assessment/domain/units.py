"""Edge conversions between integer units inside and decimal strings outside (API, CSV, reports).

Inside: fen, 0.0001 亩, 0.001 tce, kWh, 0.0001 t. Outside: 元, 万元, 亩, tce, kWh, 万kWh, t.
Parsing never rounds (more decimals than the unit holds is an AmountError); formatting is exact.
A 万元 figure is parsed at scale 6 and a 万kWh figure at scale 4, which lands exactly on fen and kWh.
"""
from __future__ import annotations

from shared.amounts import format_amount, parse_amount

LAND_SCALE, MONEY_SCALE, ENERGY_SCALE, ELECTRICITY_SCALE, EMISSION_SCALE = 4, 2, 3, 0, 4


def yuan_to_fen(text: str, *, allow_negative: bool = False) -> int:
    return parse_amount(text, MONEY_SCALE, allow_zero=True, allow_negative=allow_negative)


def wan_yuan_to_fen(text: str, *, allow_negative: bool = False) -> int:
    """'12.345678' 万元 -> 12345678 fen."""
    return parse_amount(text, MONEY_SCALE + 4, allow_zero=True, allow_negative=allow_negative)


def fen_to_yuan(fen: int) -> str:
    return format_amount(fen, MONEY_SCALE)


def fen_to_wan_yuan(fen: int) -> str:
    """12345678 fen -> '12.345678' 万元 (six decimals, exact)."""
    return format_amount(fen, MONEY_SCALE + 4)


def mu_to_units(text: str) -> int:
    return parse_amount(text, LAND_SCALE, allow_zero=True)


def units_to_mu(units: int) -> str:
    return format_amount(units, LAND_SCALE)


def tce_to_units(text: str) -> int:
    return parse_amount(text, ENERGY_SCALE, allow_zero=True)


def units_to_tce(units: int) -> str:
    return format_amount(units, ENERGY_SCALE)


def tonnes_to_units(text: str) -> int:
    return parse_amount(text, EMISSION_SCALE, allow_zero=True)


def units_to_tonnes(units: int) -> str:
    return format_amount(units, EMISSION_SCALE)


def wan_kwh_to_kwh(text: str) -> int:
    return parse_amount(text, ELECTRICITY_SCALE + 4, allow_zero=True)


def kwh_to_wan_kwh(kwh: int) -> str:
    return format_amount(kwh, ELECTRICITY_SCALE + 4)
