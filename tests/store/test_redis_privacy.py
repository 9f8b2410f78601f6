"""A Redis answer store: keys under a namespace, an exposed server refused, no password in a repr, log or key."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from aiquery.config import CacheSettings, load_settings
from aiquery.errors import ConfigError
from aiquery.redis_url import redacted
from aiquery.store import open_store, redis_store_key
from aiquery.store.base import StoredAnswer

ENV = {"DATABRICKS_HOST": "https://ws.example.com", "DATABRICKS_TOKEN": "t"}
PASSWORD = "s3cret-pass"


def cache_file(tmp_path: Path, text: str) -> CacheSettings:
    path = tmp_path / "aiquery.toml"
    path.write_text("[cache]\n" + text)
    return load_settings(ENV, config_path=path).cache


def answer(text: str) -> str:
    return StoredAnswer(text, {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}, 1.0).encode()


def test_answers_stored_before_namespaces_keep_answering_and_namespaces_keep_stores_apart(
    redis_url: str, tmp_path: Path
) -> None:
    import redis

    server = redis.Redis.from_url(redis_url)
    old = f"old-{uuid.uuid4().hex}"
    server.set(f"aiquery:answer:{old}", answer("stored under the plain prefix"), ex=60)
    default = open_store(cache_file(tmp_path, f'url = "{redis_url}"\n'), "unused")
    team = open_store(cache_file(tmp_path, f'url = "{redis_url}"\nnamespace = "team-ml"\n'), "unused")
    try:
        assert StoredAnswer.decode(default.get_many([old])[old]).value == "stored under the plain prefix"
        assert team.get_many([old]) == {}
        fresh = f"new-{uuid.uuid4().hex}"
        team.put_many({fresh: answer("the team's")})
        assert team.flush(10)
        assert server.exists(f"team-ml:answer:{fresh}") and not server.exists(f"aiquery:answer:{fresh}")
        assert default.get_many([fresh]) == {}
        assert StoredAnswer.decode(team.get_many([fresh])[fresh]).value == "the team's"
        assert default.failures == team.failures == 0
    finally:
        default.close()
        team.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache.internal:6379/0",
        "redis://10.0.0.7:6379",
        "redis://user@cache.internal/1",
        "redis://[2001:db8::1]:6379",
    ],
)
def test_a_network_server_without_password_or_tls_is_refused_unless_insecure(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        cache_file(tmp_path, f'url = "{url}"\n')
    message = str(refused.value)
    assert str(tmp_path / "aiquery.toml") in message and "[cache] insecure = true" in message
    assert "without TLS (rediss://) and without a password" in message
    assert cache_file(tmp_path, f'url = "{url}"\ninsecure = true\n').url == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://127.8.9.10:6379",
        "redis://localhost:6379",
        "redis://[::1]:6379",
        "rediss://cache.internal:6380/0",
        f"redis://:{PASSWORD}@cache.internal:6379/0",
        f"redis://alice:{PASSWORD}@cache.internal:6379/0",
        f"redis://cache.internal:6379/0?password={PASSWORD}",
        "unix:///run/redis.sock",
    ],
)
def test_loopback_tls_password_or_socket_servers_are_accepted(tmp_path: Path, url: str) -> None:
    assert cache_file(tmp_path, f'url = "{url}"\n').url == url


def test_a_password_shows_in_no_repr_message_or_store_key(tmp_path: Path) -> None:
    settings = cache_file(tmp_path, f'url = "redis://alice:{PASSWORD}@cache.internal:6379/0"\n')
    assert PASSWORD not in repr(settings) and "redis://alice:***@cache.internal:6379/0" in repr(settings)
    assert PASSWORD not in repr(load_settings(ENV, config_path=tmp_path / "aiquery.toml"))
    assert PASSWORD not in redacted(f"redis://cache.internal/0?password={PASSWORD}&db=1")
    key = redis_store_key(settings)
    other_password = cache_file(tmp_path, 'url = "redis://alice:another@cache.internal:6379/0"\n')
    other_namespace = cache_file(
        tmp_path, f'url = "redis://alice:{PASSWORD}@cache.internal:6379/0"\nnamespace = "alice"\n'
    )
    # Nothing derived from the password: the same server and namespace are the same store, whatever the password.
    assert key == redis_store_key(other_password) != redis_store_key(other_namespace)
    for url in (f"http://:{PASSWORD}@cache.internal", f"redis://:{PASSWORD}@cache.internal:port/0"):
        with pytest.raises(ConfigError, match=r"\[cache\] url = .* is invalid; expected a Redis URL") as refused:
            cache_file(tmp_path, f'url = "{url}"\n')
        assert PASSWORD not in str(refused.value)


def test_a_server_with_a_password_is_used_and_its_failures_never_show_it(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    user = f"u{uuid.uuid4().hex[:8]}"
    server = redis.Redis.from_url(redis_url)
    server.acl_setuser(user, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], commands=["+@all"])
    try:
        with_password = redis_url.replace("redis://", f"redis://{user}:{PASSWORD}@")
        store = open_store(cache_file(tmp_path, f'url = "{with_password}"\n'), "unused")
        store.put_many({"with-password": answer("kept")})
        assert store.flush(10) and store.failures == 0
        assert PASSWORD not in store.where
        store.close()
        wrong = redis_url.replace("redis://", f"redis://{user}:wrong-{PASSWORD}@")
        failing = open_store(cache_file(tmp_path, f'url = "{wrong}"\n'), "unused")
        with caplog.at_level(logging.DEBUG):
            assert failing.get_many(["with-password"]) == {}
        failing.close()
        assert failing.failures == 2 and caplog.records  # connecting when it opened, then the lookup
        assert all(PASSWORD not in record.getMessage() for record in caplog.records)
        assert all(PASSWORD not in str(record.exc_info and record.exc_info[1]) for record in caplog.records)
    finally:
        server.acl_deluser(user)
