"""One scrubber for every text that may carry a secret before it leaves the process.

Providers repeat keys back in their errors ("Incorrect API key provided: sk-…"), drivers
put URLs with passwords in theirs, and a bot token is part of every Bot API URL. Every
error of the library (`SecretariesError`), every log line of the services (`ScrubFilter`),
every reply's error text and every dead letter go through `scrub`, which removes:

- the secrets this process was configured with (`remember`: model API keys, the API
  token, the bot token, passwords of the database, context and queue URLs);
- anything shaped like one: `Bearer …`, `sk-…` keys, Telegram bot tokens, `user:pass@` in
  URLs, `?token=` / `?password=` / `?api_key=` query values.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

MASK = "***"
# Shorter values are too likely to be ordinary words to replace everywhere.
MIN_SECRET_CHARS = 6

_PATTERNS = [
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{4,}"), r"\1" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_*.-]{6,}"), "sk-" + MASK),
    # Inside a Bot API URL the token follows "bot" with no word boundary, and a token of
    # any length is a token there.
    (re.compile(r"(?i)(/bot)\d+:[A-Za-z0-9_-]+"), r"\1" + MASK),
    (re.compile(r"(?<![0-9])\d{5,12}:[A-Za-z0-9_-]{30,}"), MASK),
    (
        re.compile(r"(?i)([?&](?:token|password|passwd|api[_-]?key|key|secret)=)[^&#\s'\"]+"),
        r"\1" + MASK,
    ),
    # A password may hold "/", ":" or "@" (encoded or not): up to the last "@" of the URL.
    (re.compile(r"(://[^/\s:@]*:)[^\s]*(@)"), r"\1" + MASK + r"\2"),
]

_lock = threading.Lock()
_known: frozenset[str] = frozenset()


def remember(values: Iterable[str | None]) -> None:
    """Add configured secrets (keys, tokens, URL passwords) to what `scrub` removes."""
    global _known
    fresh = {v for v in values if v and len(v) >= MIN_SECRET_CHARS}
    if not fresh - _known:
        return
    with _lock:
        _known = _known | fresh


def url_secrets(url: str | None) -> list[str]:
    """The password (raw and percent-decoded) in a URL, for `remember`."""
    if not url or "://" not in url:
        return []
    # Not urlsplit: it ends the host at the first "/", so a password holding "/" or "@"
    # would be cut. The user info runs to the last "@" before the query.
    start = url.index("://") + 3
    end = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0), default=len(url))
    at = url.rfind("@", start, end)
    userinfo = url[start:at] if at >= 0 else ""
    if ":" not in userinfo:
        return []
    password = userinfo.split(":", 1)[1]
    return [password, unquote(password)] if password else []


def scrub(text: str) -> str:
    """`text` with every known or secret-shaped value replaced by `***`."""
    if not text:
        return text
    # Longest first, so a secret that contains another is removed whole.
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs the rendered message (and the traceback) of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the record once, scrubbed; never drops it."""
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(formatted)
        return True


_SECRET_QUERY = re.compile(
    r"([?&;](?:password|passwd|pwd|pass|secret|token|api_key|apikey|key|sslpassword|auth)=)"
    r"[^&;#]*",
    re.IGNORECASE,
)


def mask_url(url: Any) -> str:
    """Render a URL (text or a SQLAlchemy URL) with every password replaced by `***`,
    safe for messages and logs.

    Covers `user:password@` (also a password holding `@`, `/` or `%xx`, by taking the last
    `@` before the query) and secrets in the query string (`?password=…`, `&token=…`).
    """
    # A SQLAlchemy URL renders its password as *** unless told not to: masked here alike.
    render = getattr(url, "render_as_string", None)
    text = render(hide_password=False) if render is not None else str(url)
    scheme = text.find("://")
    if scheme >= 0:
        start = scheme + 3
        end = min(
            (i for i in (text.find("?", start), text.find("#", start)) if i >= 0), default=len(text)
        )
        at = text.rfind("@", start, end)
        if at >= 0:
            userinfo = text[start:at]
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            text = text[:start] + userinfo + text[at:]
    return _SECRET_QUERY.sub(r"\1***", text)
