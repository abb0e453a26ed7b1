"""The OpenAI-compatible adapter against a real chat-completions server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from secretaries_core.config import Settings
from secretaries_core.errors import InvalidInput, ModelError
from secretaries_core.llm import ChatTurn, build_adapter, parse_model
from secretaries_core.llm.openai_compat import OpenAICompatAdapter
from tests.fake_llm import Script, fake_llm


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    with fake_llm() as running:
        yield running


def adapter(url: str, **kw: object) -> OpenAICompatAdapter:
    options: dict[str, object] = {
        "base_url": url,
        "api_key": "sk-test",
        "timeout": 2.0,
        "max_retries": 2,
        "backoff": 0.01,
    }
    options.update(kw)
    return OpenAICompatAdapter("gpt-test", **options)  # type: ignore[arg-type]


def test_request_body_and_reply(server: tuple[str, Script]) -> None:
    url, script = server
    reply = adapter(url).complete(
        secretary="alice",
        prompt="You are Alice.",
        history=[ChatTurn("user", "first"), ChatTurn("assistant", "answer one")],
        text="second",
        params={"temperature": 0.2, "max_tokens": 50, "context_ttl": 60},
    )
    assert reply == "<You are Alice.> re: second (2 earlier)"
    body = script.requests[0]
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "You are Alice."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer one"},
        {"role": "user", "content": "second"},
    ]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50
    assert "context_ttl" not in body
    assert script.headers[0]["Authorization"] == "Bearer sk-test"


def test_429_then_success_is_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.steps = [(429, 0.0), (503, 0.0)]
    reply = adapter(url).complete(secretary="a", prompt="p", history=[], text="hi", params={})
    assert reply.startswith("<p>") and len(script.requests) == 3


def test_500_forever_is_a_model_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.default = (500, 0.0)
    with pytest.raises(ModelError, match="3 attempt"):
        adapter(url).complete(secretary="a", prompt="p", history=[], text="hi", params={})
    assert len(script.requests) == 3


def test_400_is_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.default = (400, 0.0)
    with pytest.raises(ModelError, match="HTTP 400"):
        adapter(url).complete(secretary="a", prompt="p", history=[], text="hi", params={})
    assert len(script.requests) == 1


def test_timeout_is_honoured(server: tuple[str, Script]) -> None:
    url, script = server
    script.default = (200, 3.0)
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"no reply within 0\.5s"):
        adapter(url, timeout=0.5, max_retries=0).complete(
            secretary="a", prompt="p", history=[], text="hi", params={}
        )
    assert time.perf_counter() - started < 2.0


def test_unreachable_server_is_a_model_error() -> None:
    from tests.servers import free_port

    with pytest.raises(ModelError, match="unreachable"):
        adapter(f"http://127.0.0.1:{free_port()}/v1", max_retries=1).complete(
            secretary="a", prompt="p", history=[], text="hi", params={}
        )


def test_model_strings() -> None:
    assert parse_model("echo") == ("echo", "echo")
    assert parse_model("openai/gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert parse_model("llama3") == ("openai", "llama3")
    for bad in ("acme/model-x", "openai/", "x/y/z"):
        with pytest.raises(InvalidInput, match="unknown model provider"):
            parse_model(bad)
    settings = replace(Settings.load(env={}), openai_base_url="http://h:1/v1")
    built = build_adapter("openai/m", settings)
    assert isinstance(built, OpenAICompatAdapter) and built.url == "http://h:1/v1/chat/completions"
