"""A realistic county, generated: deterministic by seed, from tiny (tests) to province (benchmarks).

    from ops.generator import CountyGenerator, write_dataset
    gen = CountyGenerator("tiny", seed=42)
    for e in gen.enterprises(): ...          # lazy, any size
    write_dataset(gen, "out/", xlsx=True)    # files, events, HTTP bodies, manifest

See README.md for the files, event and HTTP shapes.
"""
from .county import CountyGenerator
from .events import INTAKE_TOPICS, EventFactory
from .sizes import SIZES, Size
from .writer import write_dataset

__all__ = ["CountyGenerator", "EventFactory", "INTAKE_TOPICS", "SIZES", "Size", "write_dataset"]
