"""OpenAI-compatible chat completions over HTTP (OpenAI, Ollama, vLLM, LM Studio, llama.cpp)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from secretaries_core.errors import ModelError, ModelUnavailable
from secretaries_core.llm.base import ChatTurn

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Params that configure this library, not the model: never sent to the API.
LOCAL_PARAMS = frozenset({"context_ttl", "context_max_messages", "instance_mode"})
MAX_RETRY_AFTER_S = 30.0


class OpenAICompatAdapter:
    """POSTs `{base_url}/chat/completions` with the prompt, the history and the new message."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep

    def request_body(
        self, prompt: str, history: Sequence[ChatTurn], text: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The JSON body: system prompt, the context in order, then the user's message."""
        messages = [{"role": "system", "content": prompt}]
        messages += [{"role": turn.role, "content": turn.content} for turn in history]
        messages.append({"role": "user", "content": text})
        extra = {k: v for k, v in params.items() if k not in LOCAL_PARAMS}
        return {**extra, "model": self.model, "messages": messages}

    def complete(
        self,
        *,
        secretary: str,
        prompt: str,
        history: Sequence[ChatTurn],
        text: str,
        params: Mapping[str, Any],
    ) -> str:
        """Call the API, retrying 429/5xx and network errors up to `max_retries` times."""
        body = json.dumps(self.request_body(prompt, history, text, params)).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        retry_after = ""
        failure = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(self._delay(attempt, retry_after))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            retry_after = ""
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _reply_text(json.load(response), self.model)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                if exc.code not in RETRY_STATUSES:
                    raise ModelError(
                        f"{self.model}: HTTP {exc.code} from {self.url}: {detail}"
                    ) from exc
                retry_after = exc.headers.get("Retry-After", "") if exc.code == 429 else ""
                failure = f"HTTP {exc.code}: {detail}"
            except (TimeoutError, urllib.error.URLError) as exc:
                reason = getattr(exc, "reason", exc)
                timed_out = isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError)
                failure = (
                    f"no reply within {self.timeout:g}s" if timed_out else f"unreachable: {reason}"
                )
            except ValueError as exc:  # the body was not JSON
                raise ModelError(f"{self.model}: the response is not JSON") from exc
        raise ModelUnavailable(
            f"{self.model}: giving up after {self.max_retries + 1} attempt(s) "
            f"to {self.url}: {failure}"
        )

    def _delay(self, attempt: int, retry_after: str) -> float:
        if retry_after:
            try:
                return min(float(retry_after), MAX_RETRY_AFTER_S)
            except ValueError:
                pass
        return float(self.backoff * 2 ** (attempt - 1))

    def close(self) -> None:
        """Connections are per request; nothing is held."""


def _reply_text(payload: Any, model: str) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"{model}: the response has no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise ModelError(f"{model}: the reply is not text")
    return content
