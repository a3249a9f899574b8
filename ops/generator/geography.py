"""Counties, townships and parks, modelled on 南通市通州区 (region code 320612).

Township codes are the 9-digit statistical township codes (``<county>1NN``), the form
``services/assessment/domain/enterprise.py`` and the quota domain accept. The first county of every run
is 通州区 with its real township names; further counties (province runs) get real-format Jiangsu
region codes (32CCDD) and made-up names.
"""
from __future__ import annotations

from dataclasses import dataclass

from .rng import rng
from .sizes import Size

HOME_COUNTY = "320612"
HOME_COUNTY_NAME = "南通市通州区"
HOME_SHORT = "通州"
HOME_TOWNSHIPS = (
    "金沙街道", "西亭镇", "二甲镇", "东社镇", "三余镇", "十总镇", "骑岸镇", "五接镇",
    "兴东街道", "先锋街道", "张芝山镇", "川姜镇", "刘桥镇", "平潮镇", "平东镇", "石港镇",
)
_SYLLABLES = "安宝昌成大德东丰富港广海和河宏华汇吉嘉江金锦康乐龙茂南宁平庆仁瑞润三沙山盛石泰通万旺文西祥新兴阳永裕元长正中"
_DISTRICTS = ("02", "03", "04", "05", "06", "11", "12", "13", "21", "22", "23", "24", "25", "81", "82", "83", "84", "85")


@dataclass(frozen=True)
class Township:
    code: str  # 9 digits
    name: str


@dataclass(frozen=True)
class Park:
    park_id: str
    name: str
    township_code: str
    kind: str  # "development_zone" (开发区/园区) or "cluster" (乡镇工业集聚区)


@dataclass(frozen=True)
class County:
    index: int
    code: str
    name: str
    short: str  # used in document numbers, e.g. 通环收储〔2025〕12号
    townships: tuple[Township, ...]
    parks: tuple[Park, ...]

    def township(self, code: str) -> Township:
        return next(t for t in self.townships if t.code == code)

    def park(self, park_id: str) -> Park:
        return next(p for p in self.parks if p.park_id == park_id)


def county_codes(n: int) -> list[str]:
    codes = [HOME_COUNTY]
    for city in range(1, 14):
        for d in _DISTRICTS:
            c = f"32{city:02d}{d}"
            if c != HOME_COUNTY:
                codes.append(c)
    if n > len(codes):
        raise ValueError(f"at most {len(codes)} counties")
    return codes[:n]


def make_counties(size: Size, seed: int) -> tuple[County, ...]:
    out = []
    for idx, code in enumerate(county_codes(size.counties)):
        r = rng(seed, "county", code)
        home = code == HOME_COUNTY
        if home:
            name, short, tnames = HOME_COUNTY_NAME, HOME_SHORT, HOME_TOWNSHIPS
        else:
            short = r.choice(_SYLLABLES) + r.choice(_SYLLABLES)
            name = f"{short}县"
            tnames = tuple(f"{r.choice(_SYLLABLES)}{r.choice(_SYLLABLES)}镇" for _ in range(16))
        townships = tuple(Township(f"{code}{100 + k}", tnames[k]) for k in range(size.townships))
        multi = size.counties > 1
        parks = []
        for k in range(size.parks):
            pid = f"{code}-P{k + 1:02d}" if multi else f"P{k + 1:02d}"
            t = townships[k % len(townships)]
            if k == 0:
                pname, kind = f"{short}经济开发区", "development_zone"
            elif k == 1:
                pname, kind = f"{short}高新技术产业园", "development_zone"
            else:
                pname, kind = f"{t.name.removesuffix('镇').removesuffix('街道')}工业集聚区", "cluster"
            parks.append(Park(pid, pname, t.code, kind))
        out.append(County(idx, code, name, short, townships, tuple(parks)))
    return tuple(out)
