"""Dataset sizes. Every county of a run has the same shape; a province run is many counties."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Size:
    name: str
    counties: int
    enterprises_per_county: int
    townships: int  # per county, at most 16 (region codes <county>100 .. <county>115)
    parks: int  # per county
    reclamations: int  # 增减挂钩 projects per county
    investor_projects: int  # new projects of new investors per county (relocated enterprises add theirs)

    @property
    def enterprises(self) -> int:
        return self.counties * self.enterprises_per_county

    def scaled(self, *, counties: int | None = None, enterprises_per_county: int | None = None) -> "Size":
        s = self
        if counties is not None:
            s = replace(s, counties=counties)
        if enterprises_per_county is not None:
            s = replace(s, enterprises_per_county=enterprises_per_county)
        if s.counties < 1 or s.enterprises_per_county < 10:
            raise ValueError("a run has at least one county of at least 10 enterprises")
        return s


SIZES: dict[str, Size] = {
    s.name: s
    for s in (
        Size("tiny", 1, 30, 6, 3, 2, 6),
        Size("small", 1, 2_000, 16, 8, 8, 40),
        Size("medium", 1, 20_000, 16, 12, 20, 200),
        Size("province", 40, 2_500, 16, 8, 6, 40),
    )
}
