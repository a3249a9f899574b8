"""The integer-ratio scoring path (scoring._measured_line and the one-pass total) against the plain
Fraction arithmetic it replaced, term by term and total by total."""
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from services.assessment.domain.exact import quantize, to_fraction
from services.assessment.domain.policy import default_policy, resolve_benchmarks
from services.assessment.domain.scoring import score_inputs

from .factories import COUNTY, YEAR

POLICY = default_policy(COUNTY, YEAR)
BENCH = resolve_benchmarks(POLICY)

amounts = st.fractions(min_value=-50, max_value=10**6, max_denominator=10**6)


def reference(group, inputs):
    """term = weight x value / benchmark, floored at 0, capped at cap_factor x weight (policy.py), from the value
    as shown (8 decimals); the total is the sum of the terms as published (4 decimals)."""
    out, total = {}, Fraction(0)
    for t in group.terms:
        d = POLICY.indicator(t.indicator)
        num, den = inputs[t.indicator]
        if den == 0:
            continue
        w = to_fraction(t.weight)
        value = quantize(num / den * to_fraction(d.multiplier), 8)
        raw = w * to_fraction(value) / to_fraction(BENCH[group.name][t.indicator])
        capped = min(max(raw, Fraction(0)), w * to_fraction(group.cap_factor))
        out[t.indicator] = (value, quantize(raw), quantize(capped), capped)
        total += to_fraction(quantize(capped))
    return out, total


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fast_path_equals_fraction_arithmetic(data):
    group = POLICY.group(data.draw(st.sampled_from(["规上", "规下"])))
    inputs = {t.indicator: (data.draw(amounts), data.draw(amounts)) for t in group.terms}
    expected, total = reference(group, inputs)
    r = score_inputs("x", group, inputs, POLICY, BENCH, group_average_terms={})
    for t in r.terms:
        if t.indicator in expected:
            assert (t.value, t.raw_term, t.capped_term, t.exact_term) == expected[t.indicator]
    measured = sum((t.exact_term for t in r.terms), Fraction(0))
    if len(expected) == len(group.terms):
        assert r.total == total
    assert r.exact_total == measured and isinstance(r.total, Decimal)
