"""Field types used by event and API schemas: amounts are decimal strings, never floats."""
from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints

DecimalStr = Annotated[
    str,
    StringConstraints(pattern=r"^-?[0-9]{1,30}(\.[0-9]{1,12})?$", strip_whitespace=True),
    Field(description="exact decimal number as a string, e.g. '12.5000'", examples=["12.5000"]),
]
# no whitespace or control characters (PostgreSQL refuses NUL; ids are keys, not prose)
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s\x00-\x1f\x7f]+$")]
# An id other ids are built from: the quota service names its ledger transfers after a release or reclamation
# (e.g. "quota/intake/reclamation:<id>", 25 characters more) and the ledger takes ids of at most 200 characters,
# so a longer source id is refused where it enters, with its reason, not dead-lettered two services later.


def at_most(n: int) -> BeforeValidator:
    """A map (or list) of at most ``n`` entries, refused as one error before its entries are validated: pydantic
    checks a dict's max_length only after an error for each bad entry (500,000 wrong entries in one request cost
    seconds and hundreds of MB). Lists stop early at their Field(max_length) already."""
    def check(value):
        if isinstance(value, (dict, list)) and len(value) > n:
            raise ValueError(f"at most {n} entries")
        return value
    return BeforeValidator(check)


SourceIdentifier = Annotated[str, StringConstraints(min_length=1, max_length=150, pattern=r"^[^\s\x00-\x1f\x7f]+$")]
# Project and request ids become parts of ledger account and transfer ids ("project:<id>/CNY") and of settlement party
# codes: no '/', ':', spaces or other scripts. Assessment admits projects and quota takes their requests by this one
# pattern: a project admitted under another id could never get quota.
SafeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
