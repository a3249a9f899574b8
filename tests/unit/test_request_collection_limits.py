"""Request lists and maps are bounded: pydantic builds one error per bad item before any handler runs, so an
unbounded list of 500,000 wrong items cost seconds and hundreds of MB for one request (quota, ledger, assessment)."""
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


def test_the_other_services_maps_and_lists_are_bounded_too():
    from services.assessment.api.schemas import EnterpriseIn, IndicatorsIn, ProjectIn
    from shared.contracts.ledger import AccountSpec, TransferSpec

    makes = [
        lambda: TransferSpec(transfer_id="t", debit_account="a", credit_account="b", asset="COD", amount="1", code="c",
                             metadata={str(i): 1 for i in range(100_000)}),
        lambda: AccountSpec(account_id="a", asset="COD", address="county:320612", flags=["closed"] * 100_000),
        lambda: EnterpriseIn(credit_code="x", name="n", township_code="320612101", industry_code="C", flags=[1] * 100_000),
        lambda: IndicatorsIn(credit_code="x", year=2024, department="tax", fields={str(i): "x" for i in range(100_000)}),
        lambda: ProjectIn.model_validate({"emission_needs": {str(i): "x" for i in range(100_000)}}),
    ]
    for make in makes:
        with pytest.raises(pydantic.ValidationError) as caught:
            make()
        assert not [e for e in caught.value.errors() if e["loc"] and str(e["loc"][-1]).isdigit()], \
            "no error per entry: the size is refused first"
