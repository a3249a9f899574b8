"""python -m ops.generator --size tiny|small|medium|province --seed 42 --out DIR [--xlsx]"""
from __future__ import annotations

import argparse
import sys

from .county import CountyGenerator
from .sizes import SIZES
from .writer import write_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.generator", description=__doc__)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--year", type=int, default=2025, help="operating year; indicators are for year-1")
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--xlsx", action="store_true", help="also write every table as .xlsx")
    ap.add_argument("--counties", type=int, help="override the number of counties")
    ap.add_argument("--enterprises", type=int, help="override enterprises per county")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    size = SIZES[a.size].scaled(counties=a.counties, enterprises_per_county=a.enterprises)
    gen = CountyGenerator(size, a.seed, a.year)
    bar = None
    if not a.quiet:
        from tqdm import tqdm
        bar = tqdm(total=size.enterprises, unit="enterprise", file=sys.stderr)
    try:
        m = write_dataset(gen, a.out, xlsx=a.xlsx, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    secs = m["_elapsed_seconds"]
    print(f"{size.name}: {len(gen.counties)} county(ies), {size.enterprises} enterprises, "
          f"{m['_rows_total']} rows+events in {secs:.1f}s ({m['_rows_total'] / secs:,.0f}/s) -> {a.out}")
    for topic, n in m["events"].items():
        print(f"  {topic}: {n} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
