"""The quota service's pure domain: the county pool of freed quota.

No I/O, no clock reads (``now`` is always passed in), exact integers of each asset's smallest unit.

Modules, by what they hold:
- ``assets``          asset codes, families, scales, the approval that confirms each family
- ``problems``        machine-readable validation reasons and the error that carries them
- ``identifiers``     credit code (GB 32100) and region code checks
- ``policy``          PoolPolicy / PriorityPolicy: every county setting in one place
- ``releases``        department releases, who may publish what, exit verification
- ``reclamation``     增减挂钩 reclamation projects; their land enters the pool once, on acceptance
- ``lots``            lots taken into the pool, the retired share, pool figures per asset
- ``projects``        what the quota service knows of evaluated projects (ProjectFacts)
- ``requests``        the per-request saga: requested -> reserving -> reserved -> allocated ...
- ``allocation``      an explicit, reproducible allocation round for competing requests
- ``provenance``      which lots an allocation consumes, and the money due per lot
- ``ledger_moves``    the ledger transfers each step implies, as plain data with deterministic ids
- ``reconciliation``  our pool view against ledger balances
"""
