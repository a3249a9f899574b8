"""A jump the consumer noted is checked by a later measure even when the one that took it failed (broker away)."""
from __future__ import annotations

import pytest

from shared.consumer_lag import GroupLag


def test_a_failed_measure_keeps_the_jumps_it_had_not_checked():
    lag = GroupLag(service="x", bootstrap="127.0.0.1:1", group_id="g", topics=["t"], stored_positions=dict,
                   timeout=0.5)
    try:
        lag.note_jump("t", 0, 10, 15)
        with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a broker that is not there
            lag.measure()
        assert lag._jumps == {("t", 0): (10, 15)}
        lag.note_jump("t", 0, 12, 20)  # a later jump of the partition does not replace the first, unchecked one
        assert lag._jumps == {("t", 0): (10, 15)}
    finally:
        lag.stop()
