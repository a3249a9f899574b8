"""Events in, events out, for the assessment service. The domain logic arrives with the assessment issue."""
from shared.message_bus import MessageBus

bus = MessageBus()
