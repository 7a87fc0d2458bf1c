"""The plan file's writer (`engine/plan/indented_json.py`) prints exactly `json.dumps(value, indent=2)`."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udeploy.engine.plan.indented_json import dumps_indented

SCALARS: list[Any] = [None, True, False, 0, -5, 10**20, 1.5, -0.0, 1e-300, float("nan"), float("inf"),
                      -float("inf"), "", "plain", 'quote " backslash \\ newline \n', "é \U0001f600 \x00 \u2028"]


class Text(enum.StrEnum):
    A = "a"


class Number(enum.IntEnum):
    B = 3


JSON_VALUES = st.recursive(
    st.sampled_from(SCALARS) | st.text() | st.integers() | st.floats(),
    lambda children: st.lists(children, max_size=4) | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=40)


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(JSON_VALUES)
def test_any_document_is_written_as_json_dumps_writes_it(value: Any) -> None:
    assert dumps_indented(value) == json.dumps(value, indent=2)


def test_keys_and_subclasses_are_converted_as_json_dumps_converts_them() -> None:
    value = {7: 2, 2.5: [(), (1, 2)], True: None, False: 0, None: {}, "s": Text.A, "n": Number.B, Text.A: 1}
    assert dumps_indented(value) == json.dumps(value, indent=2)


@pytest.mark.parametrize("value", [{"a": object()}, {(1,): 1}, [b"bytes"]])
def test_what_json_cannot_hold_is_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value, indent=2)
    with pytest.raises(TypeError):
        dumps_indented(value)
