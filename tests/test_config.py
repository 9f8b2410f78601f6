"""Configuration: the TOML file, the environment, defaults, and errors that name the file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiquery.config import DATABRICKS_EMBEDDING_ENDPOINTS, Price, Secret, load_settings
from aiquery.errors import ConfigError
from aiquery.pricing import builtin_price, builtin_prices

ENV = {"DATABRICKS_HOST": "https://ws.example.com/", "DATABRICKS_TOKEN": "dapi-config-test-token"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aiquery.toml"
    path.write_text(text)
    return path


def test_an_unconfigured_endpoint_is_a_workspace_chat_endpoint() -> None:
    endpoint = load_settings(ENV, config_path=None).endpoint("databricks-gpt-5-4")
    assert endpoint.api == "chat" and endpoint.model == "databricks-gpt-5-4"
    assert endpoint.base_url == "https://ws.example.com/ai-gateway/mlflow/v1"
    assert endpoint.token == Secret("dapi-config-test-token") and endpoint.verify_tls


@pytest.mark.parametrize("name", sorted(DATABRICKS_EMBEDDING_ENDPOINTS))
def test_databricks_embedding_endpoints_default_to_embeddings(name: str) -> None:
    assert load_settings(ENV).endpoint(name).api == "embeddings"


def test_configured_endpoint_options_and_their_own_token(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[endpoints.claude]
api = "anthropic"
model = "claude-sonnet"
base_url = "https://api.anthropic.com"
token_env = "ANTHROPIC_API_KEY"
auth = "x-api-key"
max_concurrency = 8
requests_per_minute = 600
tokens_per_minute = 100000
timeout = 30
request_tags = { team = "ml" }
""",
    )
    endpoint = load_settings({**ENV, "ANTHROPIC_API_KEY": "sk-ant-xyz"}, config_path=path).endpoint("claude")
    assert (endpoint.api, endpoint.model, endpoint.base_url, endpoint.auth) == (
        "anthropic",
        "claude-sonnet",
        "https://api.anthropic.com",
        "x-api-key",
    )
    assert endpoint.token == Secret("sk-ant-xyz") and endpoint.max_concurrency == 8
    assert endpoint.requests_per_minute == 600 and endpoint.tokens_per_minute == 100000 and endpoint.timeout == 30
    assert dict(endpoint.request_tags) == {"team": "ml"}


def test_aiquery_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[endpoints.e]\napi = "gemini"\n')
    assert load_settings({**ENV, "AIQUERY_CONFIG": str(path)}).endpoint("e").api == "gemini"


def test_the_coordinator_port_is_ephemeral_unless_set(tmp_path: Path) -> None:
    assert load_settings(ENV).coordinator.port == 0
    assert load_settings(ENV, config_path=write(tmp_path, "[coordinator]\nport = 7078\n")).coordinator.port == 7078


def test_the_ai_functions_use_databricks_endpoints_unless_functions_names_others(tmp_path: Path) -> None:
    defaults = load_settings(ENV).functions
    assert defaults.endpoint_for("ai_summarize") == "databricks-meta-llama-3-3-70b-instruct"
    assert defaults.endpoint_for("ai_similarity") == "databricks-gte-large-en"
    text = '[functions]\nchat_endpoint = "my-chat"\nembedding_endpoint = "my-embed"\nai_classify = "my-claude"\n'
    functions = load_settings(ENV, config_path=write(tmp_path, text)).functions
    assert [functions.endpoint_for(name) for name in ("ai_summarize", "ai_classify", "ai_similarity")] == [
        "my-chat",
        "my-claude",
        "my-embed",
    ]


def test_every_registered_function_can_be_given_its_own_endpoint() -> None:
    from aiquery.config import TEXT_FUNCTIONS
    from aiquery.spark.ai_function_sql import AI_FUNCTIONS

    assert set(AI_FUNCTIONS) == {*TEXT_FUNCTIONS, "ai_similarity"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[endpoints.e]\napi = "soap"\n', "api = 'soap' is invalid; expected one of chat, embeddings"),
        (
            "[endpoints.e]\nmax_concurrency = 0\n",
            "max_concurrency = 0 is invalid; expected a whole number of at least 1",
        ),
        ('[endpoints.e]\ntimeout = "fast"\n', "timeout = 'fast' is invalid; expected a positive number"),
        ("[endpoints.e]\ncolour = 1\n", "unknown key 'colour'; allowed: anthropic_version, api, auth, base_url"),
        ('[endpoints.e]\nbase_url = "ftp://x"\n', "expected an http:// or https:// URL"),
        ("[endpoints.e]\nrequest_tags = { a = 1 }\n", "request_tags = {'a': 1} is invalid"),
        ("[endpoints.e\napi = 1\n", "not valid TOML"),
        ("[usage]\nenabled = 3\n", "[usage] enabled = 3 is invalid; expected true or false"),
        ("colour = 1\n", "unknown top-level key 'colour'"),
        ("[coordinator]\nport = 70000\n", "[coordinator] port = 70000 is invalid; expected a whole number from 0"),
        ("[coordinator]\nhost = 'x'\n", "[coordinator] has unknown key 'host'; allowed: port"),
        ("[endpoints.e]\nprice = { input_per_million = 1 }\n", "price = {'input_per_million': 1} is invalid; expected"),
        ("[endpoints.e]\nprice = { input_per_million = -1, output_per_million = 2 }\n", "each a number >= 0"),
        ("[endpoints.e]\nprice = { input = 1, output_per_million = 2 }\n", "input_per_million, output_per_million"),
        ('[endpoints.e]\ncurrency = "EUR"\n', "currency = 'EUR' is invalid; expected a price table beside it"),
        (
            '[endpoints.e]\ncurrency = "euros!"\nprice = { input_per_million = 1, output_per_million = 2 }\n',
            "expected a currency code",
        ),
        ('[functions]\nai_nope = "x"\n', "[functions] has unknown key 'ai_nope'; allowed: chat_endpoint"),
        ("[functions]\nchat_endpoint = 3\n", "[functions] chat_endpoint = 3 is invalid; expected an endpoint's name"),
    ],
)
def test_bad_files_and_values_name_the_file_key_and_what_is_allowed(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_settings(ENV, config_path=path)
    assert str(path) in str(raised.value) and expected in str(raised.value)


def test_missing_file_host_and_token_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings({"AIQUERY_CONFIG": str(tmp_path / "nope.toml")})
    with pytest.raises(ConfigError, match="DATABRICKS_HOST is not set"):
        load_settings({"DATABRICKS_TOKEN": "t"}).endpoint("x")
    with pytest.raises(ConfigError, match=r"no token\. Set the environment variable DATABRICKS_TOKEN"):
        load_settings({"DATABRICKS_HOST": "http://h"}).endpoint("x")


def test_secrets_never_show_in_repr() -> None:
    settings = load_settings(ENV)
    assert "dapi-config-test-token" not in repr(settings) + repr(settings.endpoint("x")) + str(Secret("abc-123"))


def test_a_configured_price_and_currency(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[endpoints.e]\ncurrency = "EUR"\nprice = { input_per_million = 0.15, output_per_million = 0.6, '
        "cached_input_per_million = 0.075, cache_write_per_million = 0.1875 }\n",
    )
    price = load_settings(ENV, config_path=path).endpoint("e").price
    assert price == Price(
        input_per_million=0.15,
        output_per_million=0.6,
        cached_input_per_million=0.075,
        cache_write_per_million=0.1875,
        currency="EUR",
    )
    # 1,000 input tokens of which 200 read from the cache and 100 written to it, 500 output tokens.
    assert price.cost(1000, 500, 200, 100) == pytest.approx((700 * 0.15 + 200 * 0.075 + 100 * 0.1875 + 500 * 0.6) / 1e6)


def test_a_model_without_a_configured_or_built_in_price_has_none() -> None:
    assert load_settings(ENV).endpoint("my-own-finetune").price is None


def test_well_known_models_have_a_dated_built_in_price_that_configuration_overrides(tmp_path: Path) -> None:
    settings = load_settings(ENV, config_path=write(tmp_path, '[endpoints.claude]\nmodel = "claude-opus-4-5"\n'))
    price = settings.endpoint("claude").price
    assert price is not None and price.currency == "USD" and price.input_per_million > 0
    assert "platform.claude.com" in price.source and "read 2026-11-30" in price.source
    # A snapshot id is priced as its model; a Databricks endpoint (named as its model) is priced in DBU.
    assert builtin_price("claude-opus-4-5-20251101") == price
    assert load_settings(ENV).endpoint("databricks-meta-llama-3-3-70b-instruct").price.currency == "DBU"  # type: ignore[union-attr]
    overridden = write(
        tmp_path,
        '[endpoints.claude]\nmodel = "claude-opus-4-5"\nprice = { input_per_million = 1, output_per_million = 2 }\n',
    )
    assert load_settings(ENV, config_path=overridden).endpoint("claude").price.source == "configured"  # type: ignore[union-attr]


def test_every_built_in_price_names_its_source_and_date() -> None:
    table = builtin_prices()
    assert len(table) >= 40
    for model, price in table.items():
        assert price.currency in ("USD", "DBU"), model
        assert price.source.startswith("https://") and "read 2026-11-30" in price.source, model
        numbers = (price.input_per_million, price.output_per_million, price.cached_input_per_million)
        assert all(n is None or n >= 0 for n in numbers) and price.input_per_million > 0, model


def test_anthropic_version_is_an_option_of_anthropic_endpoints(tmp_path: Path) -> None:
    path = write(tmp_path, '[endpoints.a]\napi = "anthropic"\nanthropic_version = "2026-10-21"\n')
    assert load_settings(ENV, config_path=path).endpoint("a").anthropic_version == "2026-10-21"
    assert load_settings(ENV).endpoint("x").anthropic_version is None  # the adapter's default, 2023-06-01
    for bad, message in (
        ('[endpoints.a]\napi = "anthropic"\nanthropic_version = "latest"\n', "an Anthropic API version date"),
        ('[endpoints.a]\napi = "chat"\nanthropic_version = "2026-10-21"\n', 'api = "anthropic" endpoints only'),
    ):
        with pytest.raises(ConfigError, match=message):
            load_settings(ENV, config_path=write(tmp_path, bad)).endpoint("a")


PRICE = "price = { input_per_million = 1, output_per_million = 2 }"


@pytest.mark.parametrize("literal", ["nan", "+inf", "-inf", "-0.0"])
@pytest.mark.parametrize(
    ("section", "line", "named"),
    [
        ("endpoints.e", "price = {{ input_per_million = {v}, output_per_million = 2 }}", "price.input_per_million"),
        ("endpoints.e", "price = {{ input_per_million = 1, output_per_million = {v} }}", "price.output_per_million"),
        (
            "endpoints.e",
            "price = {{ input_per_million = 1, output_per_million = 2, cached_input_per_million = {v} }}",
            "price.cached_input_per_million",
        ),
        ("endpoints.e", "timeout = {v}", "timeout"),
        ("endpoints.e", "deadline = {v}", "deadline"),
        ("endpoints.e", "requests_per_minute = {v}", "requests_per_minute"),
        ("endpoints.e", "tokens_per_minute = {v}", "tokens_per_minute"),
        ("endpoints.e", "max_retry_after = {v}", "max_retry_after"),
        ("usage", "ingest_interval = {v}", "ingest_interval"),
        ("cache", "ttl = {v}", "ttl"),
        ("cache", "max_size = {v}", "max_size"),
    ],
)
def test_nan_infinities_and_negative_zero_are_refused_naming_the_key_and_file(
    tmp_path: Path, section: str, line: str, named: str, literal: str
) -> None:
    path = write(tmp_path, f"[{section}]\n{line.format(v=literal)}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(ENV, config_path=path)
    message = str(raised.value)
    assert message.startswith(f"{path}: [{section}] {named} = ") and "is invalid" in message


@pytest.mark.parametrize(
    ("key", "text"),
    [("ttl", "nan d"), ("ttl", "inf h"), ("ttl", "-inf s"), ("max_size", "nan GB"), ("max_size", "infinity MB")],
)
def test_durations_and_sizes_written_as_strings_refuse_nan_and_infinities(tmp_path: Path, key: str, text: str) -> None:
    path = write(tmp_path, f'[cache]\n{key} = "{text}"\n')
    with pytest.raises(ConfigError, match=rf"{path}: \[cache\] {key} = '{text}' is invalid"):
        load_settings(ENV, config_path=path)


def test_an_endpoint_given_in_code_refuses_nan_too() -> None:
    settings = load_settings(ENV)
    with pytest.raises(ConfigError, match=r"with_endpoint\(\): \[endpoints.e\] price.input_per_million = nan"):
        settings.with_endpoint("e", price={"input_per_million": float("nan"), "output_per_million": 1.0})
    with pytest.raises(ConfigError, match=r"\[endpoints.e\] timeout = inf is invalid"):
        settings.with_endpoint("e", timeout=float("inf"))


def test_zero_and_ordinary_numbers_still_pass(tmp_path: Path) -> None:
    path = write(tmp_path, f"[endpoints.e]\n{PRICE}\ntimeout = 2.5\n[cache]\nttl = 1e9\nmax_size = 0.5e9\n")
    path.write_text(path.read_text().replace("output_per_million = 2", "output_per_million = 0.0"))
    settings = load_settings(ENV, config_path=path)
    assert settings.endpoint("e").price == Price(input_per_million=1.0, output_per_million=0.0)
    assert settings.cache.max_size == 500_000_000


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0", "-0.0", "nan USD", "infinity DBU", "1e999"])
def test_a_spending_cap_refuses_nan_infinities_and_zero(value: str) -> None:
    from aiquery.coordinator.cap import COST_SETTING, parse_max_cost

    with pytest.raises(ValueError, match=COST_SETTING):
        parse_max_cost(value)
