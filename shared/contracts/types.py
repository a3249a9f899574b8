"""Field types used by event and API schemas: amounts are decimal strings, never floats."""
from typing import Annotated

from pydantic import Field, StringConstraints

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
SourceIdentifier = Annotated[str, StringConstraints(min_length=1, max_length=150, pattern=r"^[^\s\x00-\x1f\x7f]+$")]
