"""Shared bits of the policy models: frozen pydantic models and an exact Decimal that refuses floats."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

# written as the figures of the other doors are (shared.contracts.types.DecimalStr): ASCII digits, one point, a minus
# sign. Decimal() alone also takes '1e3', '1_000' and any script's digits, which every other endpoint refuses. Up to 30
# decimals here: how many places a policy may use is the domain's rule (policy_number_out_of_range), not the syntax's.
_PLAIN = r"^-?[0-9]{1,30}(\.[0-9]{1,30})?$"
_PLAIN_RE = re.compile(_PLAIN)


def _exact_number(v: Any) -> Any:
    # floats are not exact: 0.1 would become 0.1000000000000000055..., so policies say '0.1'
    if isinstance(v, float) or isinstance(v, bool):
        raise ValueError("write numbers as decimal strings or integers, not floats")
    if isinstance(v, str):
        text = v.strip()
        if not _PLAIN_RE.fullmatch(text):
            raise ValueError("write numbers as plain decimal strings such as '12.5' (ASCII digits, one point, "
                             "no exponent, no separators)")
        return Decimal(text)
    if isinstance(v, Decimal) and not v.is_finite():
        raise ValueError("numbers must be finite")
    return v


def _plain_text(d: Decimal) -> str:
    return format(d, "f")  # never '1E+3' or '1E-7', which str() gives


ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(_exact_number),
    PlainSerializer(_plain_text, return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": _PLAIN}, {"type": "integer"}]}, mode="validation"),
    WithJsonSchema({"type": "string", "pattern": _PLAIN}, mode="serialization"),
]


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
