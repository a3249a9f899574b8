"""Fault runs: the platform on its own Kafka broker and PostgreSQL server, a steady stream of county events,
services killed, the broker and the database restarted, the ledger slowed down; then nothing lost, nothing
applied twice, the books balanced. `make test` runs the short one, `make test-faults` the full one."""
