"""Local AI Gateway emulator: the six gateway routes on loopback, deterministic answers, injectable faults.

It backs the demo, the tests and the benchmarks, and is the test double for real gateways::

    from aiquery.gateway import start_gateway

    with start_gateway(token="t", latency_ms=50, fault_rates={"503": 0.1}) as gateway:
        os.environ["DATABRICKS_HOST"] = gateway.url
        ...
        gateway.configure(script=["429", "ok"])
        print(gateway.stats()["by_status"])

Routes (``POST``): ``/ai-gateway/mlflow/v1/chat/completions``, ``/ai-gateway/mlflow/v1/embeddings``,
``/ai-gateway/mlflow/v1/responses``, ``/ai-gateway/openai/v1/responses``,
``/ai-gateway/anthropic/v1/messages`` and ``/ai-gateway/gemini/v1beta/models/{model}:generateContent``.
Settings are the fields of :class:`GatewayConfig`. A prompt can carry per-request directives:
``[[fault:503]]`` (any fault kind), ``[[latency_ms:500]]`` and ``[[tokens:2000]]``. The hostile kinds
(``[[fault:gzip_bomb]]``, ``deep_json``, ``huge_numbers``, ``endless``, ``oversized``, ``trickle``, ``html``,
``not_json``; see :mod:`aiquery.gateway.hostile`) are status 200 answers a careless client cannot survive;
``hostile_share`` (``aiquery gateway --hostile``) serves them to a share of requests chosen by a hash of each body.

Beside the gateway routes it serves the three providers' batch APIs at the providers' own paths (OpenAI's
``/v1/files`` and ``/v1/batches``, Anthropic's ``/v1/messages/batches``, Gemini's ``batchGenerateContent``), their
batches moving on the ``batch_delay`` clock (``--batch-delay``); see :mod:`aiquery.gateway.provider_batch_apis`.
"""

from __future__ import annotations

from aiquery.gateway.command import DEFAULT_TOKEN, main
from aiquery.gateway.handle import GatewayHandle, start_gateway
from aiquery.gateway.settings import FAULT_KINDS, HOSTILE_KINDS, GatewayConfig

__all__ = ["DEFAULT_TOKEN", "FAULT_KINDS", "HOSTILE_KINDS", "GatewayConfig", "GatewayHandle", "main", "start_gateway"]
