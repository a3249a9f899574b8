"""Shared bits of the policy models: frozen pydantic models and an exact Decimal that refuses floats."""
from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _exact_number(v: Any) -> Any:
    # floats are not exact: 0.1 would become 0.1000000000000000055..., so policies say '0.1'
    if isinstance(v, float) or isinstance(v, bool):
        raise ValueError("write numbers as decimal strings or integers, not floats")
    if isinstance(v, Decimal) and not v.is_finite():
        raise ValueError("numbers must be finite")
    return v


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_number)]


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
