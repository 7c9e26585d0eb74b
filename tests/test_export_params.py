"""``convbench export KIND --param K=V``: each value is converted to its parameter's type."""

from __future__ import annotations

import argparse

import pytest

from convbench.commands.common import UsageError
from convbench.commands.onnx_export import _resolve
from convbench.workloads import WORKLOADS


def resolve(kind: str, *params: str) -> dict:
    return _resolve(argparse.Namespace(workload=kind, param=list(params)))[2]


def test_a_string_choice_that_looks_like_a_number_stays_a_string() -> None:
    assert resolve("shufflenet_v2", "width=0.5")["width"] == "0.5"


def test_numbers_and_booleans_are_converted() -> None:
    params = resolve("depthwise", "channels=32", "size=14", "bn=true")
    assert (params["channels"], params["size"], params["bn"]) == (32, 14, True)


def test_a_value_of_the_wrong_type_names_the_parameter() -> None:
    with pytest.raises(UsageError, match=r"channels: Input should be a valid integer"):
        resolve("depthwise", "channels=3.5", "size=14")


def test_yaml_numbers_are_accepted_for_the_width_choice() -> None:
    model = WORKLOADS["shufflenet_v2"].params_model
    assert model.model_validate({"width": 0.5}).width == "0.5"
    assert model.model_validate({"width": 2}).width == "2.0"
    with pytest.raises(ValueError):
        model.model_validate({"width": 0.75})
