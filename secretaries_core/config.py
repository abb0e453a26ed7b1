"""Settings: CLI options override environment variables, which override defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from platformdirs import user_data_dir

from secretaries_core.context.base import ContextPolicy
from secretaries_core.errors import InvalidInput

APP_NAME = "secretaries"
DEFAULT_CONTEXT_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_CONTEXT_MAX_MESSAGES = 100
DEFAULT_REDIS_PREFIX = "secretaries:"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
INSTANCE_MODES = ("shared", "per-user")
DOUBLE_TEXTING = ("enqueue", "reject", "interrupt")
DEFAULT_MAX_MESSAGE_CHARS = 16_000
DEFAULT_MAX_CONTEXT_TOKENS = 16_000
TOKENIZERS = ("auto", "estimate")


def _env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise InvalidInput(f"{name} must be at least {minimum}, got {value}")
    return value


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise InvalidInput(f"{name} cannot be negative, got {value}")
    return value


def _env_limit(env: Mapping[str, str], name: str) -> int | None:
    """An optional daily limit: unset or empty means none; 0 refuses everything."""
    if not env.get(name):
        return None
    return _env_int(env, name, 0, minimum=0)


def _env_switch(env: Mapping[str, str], name: str, default: bool = True) -> bool:
    """On/off: 1/true/yes/on or 0/false/no/off (any case); unset or empty is `default`."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name} must be on or off (1/0, true/false, yes/no), got {raw!r}")


def _env_choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or choices[0]
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _remember_secrets(env: Mapping[str, str], *urls: str | None) -> None:
    """Tell the scrubber every secret this configuration holds (see redact.py)."""
    from secretaries_core.redact import remember, url_secrets

    names = [name for name in env if name.endswith(("_API_KEY", "_TOKEN", "_PASSWORD", "_SECRET"))]
    remember(env.get(name) for name in names)
    for url in (*urls, *(env.get(n) for n in env if n.endswith("_URL"))):
        remember(url_secrets(url))


QUEUE_SCHEMES = ("redis", "rediss", "unix", "redis+cluster")


@dataclass(frozen=True)
class Settings:
    """Where the data lives and how contexts are kept; build it with `Settings.load`."""

    home: Path
    database_url: str
    context_url: str | None = None
    database_url_is_default: bool = True
    context_ttl_seconds: int = DEFAULT_CONTEXT_TTL_SECONDS
    context_max_messages: int = DEFAULT_CONTEXT_MAX_MESSAGES
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    redis_remember_contexts: bool = True
    instance_mode: str = "shared"
    pool_capacity: int = 1000
    pool_idle_seconds: int = 900
    resolution_ttl_seconds: float = 5.0
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    openai_api_key: str | None = field(default=None, repr=False)
    model_timeout_seconds: float = 60.0
    model_max_retries: int = 3
    model_max_connections: int = 1000
    double_texting: str = "enqueue"
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS
    db_threads: int = 8
    max_context_tokens: int = DEFAULT_MAX_CONTEXT_TOKENS
    messages_per_day: int | None = None
    tool_calls_per_day: int | None = None  # per user per UTC day; None: no limit
    tokens_per_day: int | None = None
    tokenizer: str = "auto"
    api_max_body: int = 1024 * 1024
    queue_url: str | None = None
    queue_partitions: int = 16
    queue_max_attempts: int = 3
    queue_lease_seconds: float = 30.0
    api_body_timeout_seconds: float = 30.0
    outage_grace_seconds: float = 300.0
    # How long an undelivered reply is kept and retried before it is dropped as expired.
    reply_max_age_seconds: float = 86400.0
    # /metrics behind a read (or admin) token.
    metrics_token_required: bool = False
    # A tool's result is cut at this many characters (and says so).
    tool_result_chars: int = 16_000
    api_header_timeout_seconds: float = 10.0
    api_keepalive_seconds: float = 5.0
    api_max_connections: int = 1000
    circuit_failures: int = 3
    circuit_cooldown_seconds: float = 30.0
    # Telegram's limits, shared by every bot process of a token (docs/telegram.md).
    telegram_bot_per_second: int = 30
    telegram_chat_per_second: int = 1
    telegram_group_per_minute: int = 20
    telegram_drafts: bool = True
    # The webhook on `serve` (POST /telegram/webhook): the bot's token, its Bot API server,
    # and the secret Telegram sends in X-Telegram-Bot-Api-Secret-Token.
    # Where `worker/bot --metrics-port` listen: loopback unless a container's Prometheus
    # must reach them.
    metrics_host: str = "127.0.0.1"
    # How long a --confirm tool call waits for the user's approval before it is declined.
    confirm_timeout_seconds: float = 300.0
    telegram_token: str | None = field(default=None, repr=False)
    telegram_api_url: str | None = None
    telegram_webhook_secret: str | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        *,
        database_url: str | None = None,
        context_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Resolve settings: explicit arguments > `SECRETARIES_*` env vars > defaults."""
        env = os.environ if env is None else env
        home_raw = env.get("SECRETARIES_HOME")
        home = Path(home_raw).expanduser() if home_raw else Path(user_data_dir(APP_NAME))
        url = database_url or env.get("SECRETARIES_DATABASE_URL") or None
        _remember_secrets(env, url, context_url)
        return cls(
            home=home,
            database_url=url or f"sqlite:///{home / 'secretaries.db'}",
            database_url_is_default=url is None,
            context_url=context_url or env.get("SECRETARIES_CONTEXT_URL") or None,
            context_ttl_seconds=_env_int(
                env, "SECRETARIES_CONTEXT_TTL", DEFAULT_CONTEXT_TTL_SECONDS
            ),
            context_max_messages=_env_int(
                env, "SECRETARIES_CONTEXT_MAX_MESSAGES", DEFAULT_CONTEXT_MAX_MESSAGES
            ),
            redis_prefix=env.get("SECRETARIES_REDIS_PREFIX") or DEFAULT_REDIS_PREFIX,
            redis_remember_contexts=_env_switch(env, "SECRETARIES_REDIS_REMEMBER_CONTEXTS"),
            instance_mode=_env_choice(env, "SECRETARIES_INSTANCE_MODE", INSTANCE_MODES),
            pool_capacity=_env_int(env, "SECRETARIES_POOL_CAPACITY", 1000),
            pool_idle_seconds=_env_int(env, "SECRETARIES_POOL_IDLE", 900),
            resolution_ttl_seconds=_env_float(env, "SECRETARIES_RESOLUTION_TTL", 5.0),
            openai_base_url=(
                env.get("SECRETARIES_OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL
            ).rstrip("/"),
            openai_api_key=env.get("SECRETARIES_OPENAI_API_KEY") or env.get("OPENAI_API_KEY"),
            model_timeout_seconds=_env_float(env, "SECRETARIES_MODEL_TIMEOUT", 60.0),
            model_max_retries=_env_int(env, "SECRETARIES_MODEL_RETRIES", 3, minimum=0),
            model_max_connections=_env_int(env, "SECRETARIES_MODEL_MAX_CONNECTIONS", 1000),
            double_texting=_env_choice(env, "SECRETARIES_DOUBLE_TEXTING", DOUBLE_TEXTING),
            max_message_chars=_env_int(
                env, "SECRETARIES_MAX_MESSAGE_CHARS", DEFAULT_MAX_MESSAGE_CHARS
            ),
            db_threads=_env_int(env, "SECRETARIES_DB_THREADS", 8),
            max_context_tokens=_env_int(
                env, "SECRETARIES_MAX_CONTEXT_TOKENS", DEFAULT_MAX_CONTEXT_TOKENS
            ),
            messages_per_day=_env_limit(env, "SECRETARIES_MESSAGES_PER_DAY"),
            tool_calls_per_day=_env_limit(env, "SECRETARIES_TOOL_CALLS_PER_DAY"),
            tokens_per_day=_env_limit(env, "SECRETARIES_TOKENS_PER_DAY"),
            tokenizer=_env_choice(env, "SECRETARIES_TOKENIZER", TOKENIZERS),
            api_max_body=_env_int(env, "SECRETARIES_API_MAX_BODY", 1024 * 1024),
            queue_url=env.get("SECRETARIES_QUEUE_URL") or None,
            queue_partitions=_env_int(env, "SECRETARIES_QUEUE_PARTITIONS", 16),
            queue_max_attempts=_env_int(env, "SECRETARIES_QUEUE_MAX_ATTEMPTS", 3),
            queue_lease_seconds=_env_float(env, "SECRETARIES_QUEUE_LEASE", 30.0),
            api_body_timeout_seconds=_env_float(env, "SECRETARIES_API_BODY_TIMEOUT", 30.0),
            outage_grace_seconds=_env_float(env, "SECRETARIES_OUTAGE_GRACE", 300.0),
            reply_max_age_seconds=_env_float(env, "SECRETARIES_REPLY_MAX_AGE", 86400.0),
            tool_result_chars=_env_int(env, "SECRETARIES_TOOL_RESULT_CHARS", 16_000),
            metrics_token_required=_env_switch(
                env, "SECRETARIES_METRICS_TOKEN_REQUIRED", default=False
            ),
            api_header_timeout_seconds=_env_float(env, "SECRETARIES_API_HEADER_TIMEOUT", 10.0),
            api_keepalive_seconds=_env_float(env, "SECRETARIES_API_KEEPALIVE", 5.0),
            api_max_connections=_env_int(env, "SECRETARIES_API_MAX_CONNECTIONS", 1000),
            circuit_failures=_env_int(env, "SECRETARIES_CIRCUIT_FAILURES", 3),
            circuit_cooldown_seconds=_env_float(env, "SECRETARIES_CIRCUIT_COOLDOWN", 30.0),
            telegram_bot_per_second=_env_int(env, "SECRETARIES_TELEGRAM_BOT_PER_SECOND", 30),
            telegram_chat_per_second=_env_int(env, "SECRETARIES_TELEGRAM_CHAT_PER_SECOND", 1),
            telegram_group_per_minute=_env_int(env, "SECRETARIES_TELEGRAM_GROUP_PER_MINUTE", 20),
            telegram_drafts=_env_switch(env, "SECRETARIES_TELEGRAM_DRAFTS"),
            confirm_timeout_seconds=_env_float(env, "SECRETARIES_CONFIRM_TIMEOUT", 300.0),
            metrics_host=env.get("SECRETARIES_METRICS_HOST") or "127.0.0.1",
            telegram_token=env.get("SECRETARIES_TELEGRAM_TOKEN") or None,
            telegram_api_url=env.get("SECRETARIES_TELEGRAM_API_URL") or None,
            telegram_webhook_secret=env.get("SECRETARIES_TELEGRAM_WEBHOOK_SECRET") or None,
        )

    @property
    def context_policy(self) -> ContextPolicy:
        """Retention and message cap for contexts, before per-secretary overrides."""
        return ContextPolicy(timedelta(seconds=self.context_ttl_seconds), self.context_max_messages)

    @property
    def is_embedded_default(self) -> bool:
        """True when no database URL was given, so the SQLite file under `home` is used."""
        return self.database_url_is_default

    def queue_address(self) -> str | None:
        """The queue's Redis URL — SECRETARIES_QUEUE_URL, else the context URL when that is
        Redis — or None when neither is (read from the settings alone, so commands refuse
        a bad configuration before importing redis-py)."""
        url = self.queue_url or self.context_url or ""
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        return url if scheme in QUEUE_SCHEMES else None

    def require_queue(self) -> str:
        """The URL the queue is opened on (its scheme is checked by `Queue`), or
        `InvalidInput` saying what to set when there is none."""
        url = self.queue_url or self.context_url
        if not url:
            raise InvalidInput(
                "the queue needs Redis: set SECRETARIES_QUEUE_URL (or a redis:// context URL)"
            )
        return url
