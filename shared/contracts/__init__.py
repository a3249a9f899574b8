"""Event contracts shared by producers and consumers: one pydantic model per event type and version.

Importing this package registers every contract, so any service can decode any event it receives.
"""
from shared.contracts import assessment, ledger, quota, settlement, topics  # noqa: F401  (registration)
