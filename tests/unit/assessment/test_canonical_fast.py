"""The faster writers of canonical JSON give the json module's bytes: orjson for plain data (with the json
module for what orjson refuses), the storage dumps, identity memos."""
import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.assessment.domain.canonical import by_identity, canonical_json, plain_json
from services.assessment.storage.rows import dumps, loads

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def reference(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=500)
@given(plain)
def test_plain_json_is_the_json_modules(value):
    assert plain_json(value) == reference(value)
    assert dumps(value) == canonical_json(value) == reference(value)
    assert loads(dumps(value)) == value


def test_edge_texts_and_non_plain_values():
    for text in ["\x00\x1f\x7f", "\u2028\u2029", "\ud800", "😀", '"\\', "é"]:
        assert plain_json({text: [text]}) == reference({text: [text]})
    value = {"b": Decimal("1.50"), "a": {3, 1}, 2: (1, 2)}
    assert dumps(value) == canonical_json(value) == '{"2":[1,2],"a":[1,3],"b":"1.5"}'


def test_by_identity_memo():
    calls = []
    memo = by_identity(lambda x: calls.append(x) or len(calls), size=2)
    a, b, c = [1], [1], [2]
    assert (memo(a), memo(a), memo(b)) == (1, 1, 2)  # equal but distinct objects are distinct entries
    assert memo(c) == 3 and memo(a) == 4  # full: the memo started again
