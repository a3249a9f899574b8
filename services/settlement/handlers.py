"""Events in, events out, for the settlement service. The domain logic arrives with the settlement issue."""
from shared.message_bus import MessageBus

bus = MessageBus()
