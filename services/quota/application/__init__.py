"""The quota service's application layer: use cases shared by the HTTP API, the Kafka consumer and the
background work. Each runs inside the caller's transaction (a ``Tx``): the state change, the events it
publishes and the ledger commands it sends commit together or not at all."""
