"""modelParameters: Databricks' error classes, normalisation, and each API's table of names."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import pytest

from aiquery.apis import ADAPTERS, APIRequest, check_supported, get_adapter, prepare_model_parameters
from aiquery.apis.parameters import PARAMETER_SPECS, RESERVED_PARAMETERS, validate_model_parameters
from aiquery.errors import ArgumentError, ConfigError

PREFIX = "AI_FUNCTION_INVALID_MODEL_PARAMETERS."


def _error(params: dict[str, Any], **kwargs: Any) -> ArgumentError:
    with pytest.raises(ArgumentError) as raised:
        validate_model_parameters(params, **kwargs)
    return raised.value


@pytest.mark.parametrize("name", ["messages", "prompt", "input", "contents", "system", "instructions"])
def test_prompt_names_are_reserved(name: str) -> None:
    error = _error({name: "Summarize this"})

    assert error.error_class == PREFIX + "FOUND_RESERVED_PARAMETER_NAME"
    assert error.sqlstate == "22023"
    assert f'The "{name}" parameter should be specified in the "request" argument of AI_QUERY.' in str(error)


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("response_format", '"responseFormat" argument'),
        ("model", "set by aiquery"),
        ("stream", "set by aiquery"),
    ],
)
def test_other_reserved_names_say_where_the_value_belongs(name: str, where: str) -> None:
    error = _error({name: True})

    assert error.error_class == PREFIX + "FOUND_RESERVED_PARAMETER_NAME"
    assert where in error.detail


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"max_tokens": "256"}, 'Expected INTEGER data type but found "256".'),
        ({"max_tokens": 12.5}, "Expected INTEGER data type but found 12.5."),
        ({"max_tokens": True}, "Expected INTEGER data type but found true."),
        ({"temperature": "hot"}, 'Expected DOUBLE data type but found "hot".'),
        ({"temperature": [0.1]}, "Expected DOUBLE data type but found [0.1]."),
        ({"stop": 5}, "Expected STRING or ARRAY<STRING> data type but found 5."),
        ({"stop": ["a", 1]}, 'Expected STRING or ARRAY<STRING> data type but found ["a", 1].'),
        ({"reasoning_effort": "extreme"}, 'Expected STRING (one of "none", "minimal", "low"'),
        ({"seed": Decimal("1.5")}, "Expected INTEGER data type but found 1.5."),
    ],
)
def test_wrong_types(params: dict[str, Any], expected: str) -> None:
    error = _error(params)

    assert error.error_class == PREFIX + "INVALID_PARAMETER_DATA_TYPE"
    name = next(iter(params))
    assert error.detail.startswith(f'The "{name}" parameter has invalid data type. ')
    assert expected in error.detail


@pytest.mark.parametrize(
    ("params", "constraint"),
    [
        ({"temperature": 2.5}, "between 0.0 and 2.0"),
        ({"temperature": -0.1}, "between 0.0 and 2.0"),
        ({"temperature": float("nan")}, "between 0.0 and 2.0"),
        ({"top_p": 1.01}, "between 0.0 and 1.0"),
        ({"max_tokens": 0}, "greater than or equal to 1"),
        ({"n": 0}, "greater than or equal to 1"),
        ({"top_k": -5}, "greater than or equal to 1"),
        ({"presence_penalty": 2.5}, "between -2.0 and 2.0"),
        ({"frequency_penalty": -3}, "between -2.0 and 2.0"),
    ],
)
def test_out_of_range(params: dict[str, Any], constraint: str) -> None:
    error = _error(params)

    assert error.error_class == PREFIX + "INVALID_NUMERIC_PARAMETER"
    name = next(iter(params))
    assert error.detail == f'The "{name}" parameter must be {constraint} for the modelParameters argument of AI_QUERY.'


def test_endpoint_name_and_parameters_prefix_the_message() -> None:
    error = _error({"temperature": 3, "max_tokens": 5}, endpoint="my-chat")

    assert error.detail.startswith(
        'The provided model parameters ({"max_tokens": 5, "temperature": 3}) are invalid in the AI_QUERY '
        'function for serving endpoint "my-chat". The "temperature" parameter must be'
    )


def test_values_are_normalised() -> None:
    validated = validate_model_parameters(
        {
            "max_tokens": 256.0,
            "top_k": Decimal("40"),
            "temperature": Decimal("0.1"),
            "top_p": 1,
            "stop": ("END", "STOP"),
            "reasoning_effort": "HIGH",
            "seed": None,
            "service_tier": {"kind": "priority"},
        }
    )

    assert validated == {
        "max_tokens": 256,
        "top_k": 40,
        "temperature": 0.1,
        "top_p": 1.0,
        "stop": ["END", "STOP"],
        "reasoning_effort": "high",
        "service_tier": {"kind": "priority"},
    }
    assert type(validated["max_tokens"]) is int
    assert type(validated["top_k"]) is int
    assert type(validated["temperature"]) is float
    assert type(validated["top_p"]) is float
    assert "seed" not in validated  # SQL NULL means "not set"


def test_validation_does_not_touch_its_input() -> None:
    params = {"stop": ["a"], "max_tokens": 3.0}
    validate_model_parameters(params)
    assert params == {"stop": ["a"], "max_tokens": 3.0}


@pytest.mark.parametrize(
    ("api", "name"),
    [
        ("anthropic", "n"),
        ("anthropic", "seed"),
        ("anthropic", "presence_penalty"),
        ("responses", "stop"),
        ("openai-responses", "top_k"),
        ("responses", "n"),
        ("embeddings", "max_tokens"),
        ("embeddings", "temperature"),
    ],
)
def test_parameters_an_api_lacks_are_unsupported(api: str, name: str) -> None:
    value = "x" if name == "stop" else 1
    with pytest.raises(ArgumentError) as raised:
        prepare_model_parameters(api, {name: value})

    assert raised.value.error_class == PREFIX + "UNSUPPORTED_MODEL_PARAMETER"
    assert raised.value.sqlstate == "22023"
    assert f'The "{name}" parameter is not supported for the serving endpoint.' in raised.value.detail
    assert f'"{api}"' in raised.value.detail


def test_anthropic_temperature_stops_at_one() -> None:
    assert prepare_model_parameters("chat", {"temperature": 1.5}) == {"temperature": 1.5}
    with pytest.raises(ArgumentError) as raised:
        prepare_model_parameters("anthropic", {"temperature": 1.5})
    assert raised.value.error_class == PREFIX + "INVALID_NUMERIC_PARAMETER"
    assert "between 0.0 and 1.0" in raised.value.detail


def test_unknown_api_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="allowed: chat, embeddings"):
        check_supported("bedrock", {})


def test_every_api_has_a_mapping_that_knows_every_parameter() -> None:
    for api, mapping in {api: adapter.parameters for api, adapter in ADAPTERS.items()}.items():
        assert set(mapping.routes) <= set(PARAMETER_SPECS), api
        assert mapping.unsupported <= set(PARAMETER_SPECS), api
        assert not set(mapping.routes) & mapping.unsupported, api
    assert not set(PARAMETER_SPECS) & set(RESERVED_PARAMETERS)


def test_building_twice_does_not_mutate_shared_parameters() -> None:
    # A pass-through object merged with reasoning_effort must not leak into the caller's parameters,
    # which are shared by every row of a call site.
    parameters = prepare_model_parameters("responses", {"reasoning": {"summary": "auto"}, "reasoning_effort": "low"})
    request = APIRequest(prompt="p", model="m", parameters=parameters)
    adapter = get_adapter("responses")

    first = adapter.build_body(request)
    first["reasoning"]["effort"] = "tampered"
    second = adapter.build_body(request)

    assert parameters == {"reasoning": {"summary": "auto"}, "reasoning_effort": "low"}
    assert second["reasoning"] == {"summary": "auto", "effort": "low"}


def test_argument_errors_survive_pickling() -> None:
    error = _error({"prompt": "x"})
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.error_class, copy.detail, copy.sqlstate) == (error.error_class, error.detail, error.sqlstate)
