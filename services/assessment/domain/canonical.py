"""Canonical JSON and content hashes: the same content always gives the same bytes.

Keys are sorted, no whitespace, UTF-8 kept as is; a Decimal is written as its normalized plain string
(so '1.20' and '1.2' hash alike), dates in ISO 8601, sets as sorted lists, enums by value.
"""
from __future__ import annotations

import dataclasses
import functools
import enum
import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson


@functools.lru_cache(maxsize=1 << 16)  # scores repeat (caps, benchmarks, weights): a run formats millions
def decimal_text(d: Decimal) -> str:
    if not d.is_finite():
        raise ValueError("non-finite decimals have no canonical form")
    if d == 0:
        return "0"
    return format(d.normalize(), "f")


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_plain(obj: Any) -> Any:
    """Turn domain values into JSON-ready plain data (dict/list/str/int/bool/None)."""
    # fast path on exact types: a county run hashes millions of these
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is Decimal:
        return decimal_text(obj)
    if t is dict:
        return {str(k): to_plain(v) for k, v in obj.items()}
    if t is list or t is tuple:
        return [to_plain(v) for v in obj]
    return _to_plain_general(obj)


def _to_plain_general(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        raise TypeError("floats are not exact and have no place in canonical content")
    if isinstance(obj, Decimal):
        return decimal_text(obj)
    if isinstance(obj, Fraction):
        raise TypeError("publish fractions as quantized Decimals first")
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if hasattr(obj, "to_plain"):
        return obj.to_plain()
    if hasattr(obj, "model_dump"):  # pydantic models
        return to_plain(obj.model_dump(mode="python"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELD_NAMES.get(type(obj))
        if names is None:
            names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
        return {n: to_plain(getattr(obj, n)) for n in names}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted(to_plain(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    raise TypeError(f"no canonical form for {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    return plain_json(to_plain(obj))


# sorted keys; dataclasses, datetimes and subclasses of str, int ... are refused (TypeError), not written
PLAIN_OPTIONS = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
                 | orjson.OPT_PASSTHROUGH_SUBCLASS)


def plain_json(plain: Any) -> str:
    """The canonical JSON of plain data (what to_plain gives): orjson writes the same text as
    ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` several times faster; what
    it refuses (integers beyond 64 bits, lone surrogates, anything not plain) goes to the json module."""
    try:
        return orjson.dumps(plain, option=PLAIN_OPTIONS).decode()
    except TypeError:
        return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(obj: Any) -> str:
    """sha256 hex of the canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


class by_identity:
    """A memo of ``fn(obj)`` keyed by the object itself rather than its hash: for the few objects a run
    shares among 100,000 results (a recommendation, a treatment), whose dataclass or pydantic hash would
    be computed again on every lookup. The memo holds the object, so its id cannot be reused meanwhile."""

    def __init__(self, fn, size: int = 256):
        self.fn = fn
        self.size = size
        self.memo: dict[int, tuple[Any, Any]] = {}
        functools.update_wrapper(self, fn)

    def __call__(self, obj):
        hit = self.memo.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        value = self.fn(obj)
        if len(self.memo) >= self.size:
            self.memo.clear()
        self.memo[id(obj)] = (obj, value)
        return value
