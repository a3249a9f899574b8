"""Routes each consumed event to the handler a service registered for its type (cosmicpython's message
bus, reduced to what we need: one handler per event type, run inside the consumer's unit of work)."""
from __future__ import annotations

from typing import Callable

from shared.consumer import MessageContext
from shared.envelope import Event


class MessageBus:
    def __init__(self) -> None:
        self._handlers: dict[str, Callable[[MessageContext], None]] = {}

    def on(self, *events: type[Event]):
        def deco(fn: Callable[[MessageContext], None]):
            for ev in events:
                if ev.name in self._handlers:
                    raise RuntimeError(f"two handlers for {ev.name}")
                self._handlers[ev.name] = fn
            return fn

        return deco

    @property
    def handled_types(self) -> set[str]:
        return set(self._handlers)

    def __call__(self, ctx: MessageContext) -> None:
        self._handlers[ctx.envelope.event_name](ctx)
