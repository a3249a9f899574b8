"""Tables of the assessment service. Only this service's process reads or writes them."""
from sqlalchemy import MetaData

from shared.messaging_tables import add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)
