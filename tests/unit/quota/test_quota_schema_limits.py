"""Request lists and maps are bounded: pydantic builds one error per bad item before any handler runs, so an
unbounded list of 500,000 wrong items cost seconds and hundreds of MB for one request."""
import pydantic
import pytest

from services.quota.api.schemas import PolicyIn, PriorityIn


@pytest.mark.parametrize("make", [
    lambda: PolicyIn(township_order=[1] * 500_000),
    lambda: PolicyIn(prices={str(i): "x" for i in range(50_000)}),
    lambda: PolicyIn(retire_share_bp={str(i): "x" for i in range(50_000)}),
    lambda: PriorityIn(strategic_industries=[1] * 500_000),
    lambda: PriorityIn(class_order=[1] * 500_000),
    lambda: PriorityIn(keys=["x"] * 500_000),
])
def test_a_huge_list_is_one_error(make):
    with pytest.raises(pydantic.ValidationError) as caught:
        make()
    assert len(caught.value.errors()) == 1
