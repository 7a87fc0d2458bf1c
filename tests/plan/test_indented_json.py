"""The plan file's writer (`engine/plan/indented_json.py`) prints exactly `json.dumps(value, indent=2)`."""

from __future__ import annotations

import enum
import json
import random
from typing import Any

import pytest

from udeploy.engine.plan.indented_json import dumps_indented

SCALARS: list[Any] = [None, True, False, 0, -5, 10**20, 1.5, -0.0, 1e-300, float("nan"), float("inf"),
                      -float("inf"), "", "plain", 'quote " backslash \\ newline \n', "é \U0001f600 \x00 \u2028"]


class Text(enum.StrEnum):
    A = "a"


class Number(enum.IntEnum):
    B = 3


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 5 or roll < 0.4:
        return rng.choice(SCALARS)
    if roll < 0.55:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.6:
        return tuple(random_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return {rng.choice(["k", "é", "a b", "", 'x"y']) + str(i): random_value(rng, depth + 1)
            for i in range(rng.randint(0, 4))}


def test_random_documents_are_written_as_json_dumps_writes_them() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        value = random_value(rng)
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
