"""Industry profiles (GB/T 4754-2017 codes) typical of 南通's township industry: how much energy and
which pollutants per 万元 of revenue, whether the industry is 两高 or a utility.

Intensities are medians; each enterprise scatters around them (log-normal). Pollutants are named by
the quota asset codes (COD, NH3N, SO2, NOX, VOCS).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Industry:
    code: str
    word: str  # goes into enterprise names: 南通鑫华纺织有限公司
    weight: float  # share of enterprises
    energy_tce_per_wan: float  # tce per 万元 revenue
    emissions_t_per_wan: dict[str, float] = field(default_factory=dict)
    two_high: bool = False
    utility: bool = False


INDUSTRIES: tuple[Industry, ...] = (
    Industry("C1713", "印染", 6, 0.12, {"COD": 0.0020, "NH3N": 0.00020, "VOCS": 0.00005}),
    Industry("C1810", "服饰", 8, 0.010, {"COD": 0.00008}),
    Industry("C1391", "食品", 5, 0.030, {"COD": 0.0010, "NH3N": 0.00010}),
    Industry("C2221", "纸业", 3, 0.15, {"COD": 0.0030, "NH3N": 0.00030, "SO2": 0.00050, "NOX": 0.00050}),
    Industry("C2614", "化工", 4, 0.30, {"COD": 0.0010, "NH3N": 0.00020, "SO2": 0.00080, "NOX": 0.0010,
                                       "VOCS": 0.0020}, two_high=True),
    Industry("C2669", "新材料", 4, 0.10, {"COD": 0.0003, "VOCS": 0.0010}),
    Industry("C2927", "塑胶", 8, 0.040, {"VOCS": 0.0008}),
    Industry("C3021", "建材", 4, 0.25, {"SO2": 0.0010, "NOX": 0.0015}, two_high=True),
    Industry("C3311", "钢结构", 8, 0.030, {"VOCS": 0.0003}),
    Industry("C3360", "表面处理", 3, 0.050, {"COD": 0.0010, "NH3N": 0.00010}),
    Industry("C3484", "机械", 14, 0.020, {"VOCS": 0.0001}),
    Industry("C3599", "装备", 8, 0.015),
    Industry("C3824", "电气", 8, 0.015),
    Industry("C3976", "电子", 6, 0.020, {"VOCS": 0.0002}),
    Industry("D4411", "热电", 0.5, 2.0, {"SO2": 0.0020, "NOX": 0.0030}, utility=True),
    Industry("D4620", "水务", 0.5, 0.05, {"COD": 0.0100, "NH3N": 0.0010}, utility=True),
)
CUMULATIVE: tuple[float, ...] = tuple(sum(i.weight for i in INDUSTRIES[: k + 1]) for k in range(len(INDUSTRIES)))
BY_CODE = {i.code: i for i in INDUSTRIES}
# Industries new investors bring into parks (no utilities).
PROJECT_INDUSTRIES = tuple(i for i in INDUSTRIES if not i.utility)
