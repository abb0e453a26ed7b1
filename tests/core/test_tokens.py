"""Token counting offline, the estimate's bound, and the budget's trimming as a property."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secretaries_core.context.base import Message
from secretaries_core.conversation.budget import fit_history, group_turns
from secretaries_core.conversation.tokens import TokenCounter, estimate_tokens, load_encoding

ENGLISH = (
    "The quick brown fox jumps over the lazy dog. Every user of the bot picks the secretary "
    "they want, and each secretary keeps its own prompt, model and parameters. "
) * 4
RUSSIAN = (
    "Съешь же ещё этих мягких французских булок, да выпей чаю. Секретарь отвечает "
    "пользователю на его вопросы и помнит, о чём шла речь вчера. "  # noqa: RUF001
) * 4


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt hangs, like a black-holing firewall (the worst case)."""

    def hang(*_args: Any, **_kwargs: Any) -> None:
        threading.Event().wait(30)
        raise OSError("network is down")

    monkeypatch.setattr(socket.socket, "connect", hang)
    monkeypatch.setattr(socket, "getaddrinfo", hang)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/nonexistent-secretaries-test-cache")


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_the_real_tokenizer_loads_without_network_and_never_hangs(
    no_network: None, name: str
) -> None:
    started = time.perf_counter()
    encoding = load_encoding(name)
    assert time.perf_counter() - started < 10
    assert encoding is not None
    assert len(encoding.encode("hello world")) == 2


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
@pytest.mark.parametrize("text", [ENGLISH, RUSSIAN], ids=["english", "russian"])
def test_the_estimate_stays_within_its_documented_bound(name: str, text: str) -> None:
    encoding = load_encoding(name)
    assert encoding is not None
    real = len(encoding.encode(text))
    ratio = estimate_tokens(text) / real
    # Documented in secretaries_core/tokens.py: conservative, at most 3x the real count.
    assert 1.0 <= ratio <= 3.0, ratio


def test_the_counter_uses_the_real_vocabulary_for_known_models_only() -> None:
    counter = TokenCounter()
    assert counter.is_exact("gpt-4o-mini") and counter.is_exact("openai/gpt-4.1")
    assert not counter.is_exact("llama3") and not counter.is_exact("echo")
    assert counter.count("gpt-4o", "hello world") == 2
    assert counter.count("llama3", "hello world") == estimate_tokens("hello world") == 4
    assert not TokenCounter(tokenizer="estimate").is_exact("gpt-4o")


def test_a_missing_vocabulary_degrades_to_the_estimate() -> None:
    counter = TokenCounter(loader=lambda _name: None)
    assert counter.count("gpt-4o", ENGLISH) == estimate_tokens(ENGLISH)


# -- trimming ----------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
words = st.text(alphabet="abcdefgh ", min_size=1, max_size=60)


@st.composite
def histories(draw: st.DrawFn) -> list[Message]:
    messages: list[Message] = []
    for _ in range(draw(st.integers(0, 12))):
        for _ in range(draw(st.integers(1, 2))):  # carried texts give two user messages
            messages.append(Message("user", draw(words), T0 + timedelta(seconds=len(messages))))
        messages.append(Message("assistant", draw(words), T0 + timedelta(seconds=len(messages))))
    return messages


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(20, 400), st.integers(0, 50))
def test_trimming_keeps_the_newest_whole_turns_within_the_budget(
    history: list[Message], limit: int, reply: int
) -> None:
    counter = TokenCounter(tokenizer="estimate")
    turns = group_turns(history)
    assert [m for t in turns for m in t] == history
    fit = fit_history(
        turns,
        counter=counter,
        model="m",
        system="You are X.",
        texts=["new"],
        limit=limit,
        reply_tokens=reply,
    )
    # A suffix of whole turns: the dropped ones are exactly the older ones.
    assert fit.dropped + fit.kept == turns
    for turn in fit.kept:
        assert turn[0].role == "user" and turn[-1].role == "assistant"
    fixed = counter.message("m", "You are X.") + counter.message("m", "new") + 3
    used = sum(counter.message("m", m.content) for m in fit.history)
    assert fit.prompt_tokens == fixed + used
    if fit.kept:
        assert fit.prompt_tokens + reply <= limit
    if fit.dropped:
        # Maximal: the next older turn would not have fitted.
        extra = sum(counter.message("m", m.content) for m in fit.dropped[-1])
        assert fit.prompt_tokens + extra + reply > limit
