"""Routes each consumed event to the handler a service registered for its type (cosmicpython's message
bus, reduced to what we need: one handler per event type, run inside the consumer's unit of work)."""
from __future__ import annotations

from typing import Callable

from shared.consumer import MessageContext
from shared.envelope import Envelope, Event


class MessageBus:
    def __init__(self) -> None:
        self._handlers: dict[str, Callable[[MessageContext], None]] = {}
        self._conditions: dict[str, Callable[[Event], bool]] = {}

    def on(self, *events: type[Event], when: Callable[[Event], bool] | None = None):
        """Register the handler of these event types; ``when`` narrows it to the events it concerns (the rest
        are recorded as ignored without a handler call or a savepoint: cheap for a topic shared with others,
        e.g. the ledger's outcomes of every service's transfers)."""
        def deco(fn: Callable[[MessageContext], None]):
            for ev in events:
                if ev.name in self._handlers:
                    raise RuntimeError(f"two handlers for {ev.name}")
                self._handlers[ev.name] = fn
                if when is not None:
                    self._conditions[ev.name] = when
            return fn

        return deco

    @property
    def handled_types(self) -> set[str]:
        return set(self._handlers)

    def wants(self, env: Envelope, event: Event) -> bool:
        """Whether a handled event concerns this service (see ``on``'s ``when``)."""
        condition = self._conditions.get(env.event_name)
        return condition is None or condition(event)

    def __call__(self, ctx: MessageContext) -> None:
        self._handlers[ctx.envelope.event_name](ctx)
