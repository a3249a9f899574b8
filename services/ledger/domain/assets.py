"""What the ledger counts: each asset is an integer count of its smallest unit (10**-scale display units)."""
from __future__ import annotations

from dataclasses import dataclass

from shared.amounts import format_amount, parse_amount


@dataclass(frozen=True, slots=True)
class Asset:
    code: str
    name: str
    unit: str  # display unit of API amounts
    scale: int  # smallest unit = 10**-scale display units

    def parse(self, text: str | int) -> int:
        """Decimal string at the API -> integer units (never rounds, refuses floats)."""
        return parse_amount(text, self.scale)

    def format(self, units: int) -> str:
        return format_amount(units, self.scale)


DEFAULT_ASSETS: dict[str, Asset] = {
    a.code: a
    for a in (
        Asset("LAND", "土地指标", "亩", 4),
        Asset("ENERGY", "用能权", "tce", 3),
        Asset("COD", "化学需氧量排放权", "t", 4),
        Asset("NH3N", "氨氮排放权", "t", 4),
        Asset("SO2", "二氧化硫排放权", "t", 4),
        Asset("NOX", "氮氧化物排放权", "t", 4),
        Asset("VOCS", "挥发性有机物排放权", "t", 4),
        Asset("CNY", "人民币", "元", 2),
    )
}
