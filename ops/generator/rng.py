"""Deterministic randomness: every entity draws from its own generator, seeded from the run's seed and
the entity's key, so any row can be made on its own (streaming, no global state) and re-generation
gives the same figures and ids.

``random.Random`` seeded with an int gives the same ``random()``/``getrandbits`` sequence on every
CPython; the generator only uses those and functions built on them.
"""
from __future__ import annotations

import hashlib
import math
import random
import uuid
from statistics import NormalDist

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://countypool/ops/generator")
_NORMAL = NormalDist()


def derive(seed: int, *parts: object) -> int:
    """A 64-bit integer from the seed and a key (blake2b: stable across runs, unlike ``hash``)."""
    text = "|".join((str(seed), *map(str, parts)))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def rng(seed: int, *parts: object) -> random.Random:
    return random.Random(derive(seed, *parts))


def event_id(seed: int, size: str, event_name: str, key: str) -> str:
    """Deterministic CloudEvents id: the same seed, size, event and entity give the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{seed}/{size}/{event_name}/{key}"))


class AffinePermutation:
    """A bijection of range(n): i -> (a*i + b) mod n with gcd(a, n) = 1, chosen from the seed."""

    def __init__(self, n: int, seed: int, *parts: object):
        if n <= 0:
            raise ValueError("n must be positive")
        self.n = n
        r = rng(seed, "perm", n, *parts)
        a = r.randrange(1, n + 1) if n > 1 else 1
        while math.gcd(a, n) != 1:
            a = a % n + 1
        self.a, self.b = a, r.randrange(n)

    def __call__(self, i: int) -> int:
        return (self.a * i + self.b) % self.n


def z_of_quantile(q: float) -> float:
    return _NORMAL.inv_cdf(q)


def lognormal(r: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(sigma * r.gauss(0.0, 1.0))


def clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x
