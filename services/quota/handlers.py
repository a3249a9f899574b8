"""Events in, events out, for the quota service. The domain logic arrives with the quota issue."""
from shared.message_bus import MessageBus

bus = MessageBus()
