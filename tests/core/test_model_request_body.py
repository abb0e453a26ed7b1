"""The model request's JSON body: messages encoded once per process, the same document."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from secretaries_core.context.base import Message
from secretaries_core.llm.base import ChatRequest, ChatTurn
from secretaries_core.llm.openai_client import LOCAL_PARAMS, OpenAIAdapter, OpenAIClients

HOSTILE = 'quotes " and \\\\ backslashes, \u2028 separators, emoji 🦊, \x01 control, </script>'


def _document(adapter: OpenAIAdapter, request: ChatRequest, stream: bool) -> dict[str, Any]:
    """The body as a plain json.dumps of the whole document would have it."""
    extra = {k: v for k, v in request.params.items() if k not in LOCAL_PARAMS}
    body = {**extra, "model": adapter.model, "messages": request.messages()}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"temperature": 0.2, "max_tokens": 50},
        {"messages": "not these", "model": "x", "stop": ["\n"]},
    ],
)
def test_the_body_is_the_document_whatever_the_history(
    stream: bool, params: dict[str, Any]
) -> None:
    at = datetime.now(UTC)
    history = [
        Message("user", f"{HOSTILE} {i}", at) if i % 2 == 0 else ChatTurn("assistant", f"a{i}")
        for i in range(30)
    ]
    clients = OpenAIClients(
        base_url="http://127.0.0.1:1/v1", api_key=None, timeout=5, max_retries=0
    )
    adapter = OpenAIAdapter("gpt-x", clients)
    request = ChatRequest("alice", f"Prompt {HOSTILE}", history, ["new", HOSTILE], params)
    for _ in range(2):  # the second time from the process's encoded messages
        sent = json.loads(adapter._body(request, stream=stream))
        assert sent == _document(adapter, request, stream)
        assert list(sent).count("messages") == 1
