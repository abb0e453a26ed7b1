"""`secretaries chat` through the CLI: embedded default, Redis contexts, and its errors."""

from __future__ import annotations

from tests.cli.conftest import Run, as_json, failed, ok
from tests.llm_server import llm_server


def test_chat_on_the_embedded_default(cli_default: Run) -> None:
    ok(cli_default("create", "alice", "--model", "echo", "--prompt", "A", "--default"))
    ok(cli_default("create", "bob", "--model", "echo", "--prompt", "B"))
    assert ok(cli_default("chat", "77", "hello")).stdout == "[alice] hello (context: 0 messages)\n"
    doc = as_json(cli_default("chat", "77", "more", "--json"))
    assert doc == {
        "reply": "[alice] more (context: 2 messages)",
        "secretary": "alice",
        "source": "default",
    }
    ok(cli_default("assign", "77", "bob"))
    assert as_json(cli_default("chat", "77", "hi", "--json"))["secretary"] == "bob"
    stats = as_json(cli_default("contexts", "stats", "--json"))
    assert stats["by_secretary"] == {
        "alice": {"contexts": 1, "messages": 4},
        "bob": {"contexts": 1, "messages": 2},
    }


def test_chat_with_redis_contexts(cli: Run, redis_url: str) -> None:
    ok(cli("create", "alice", "--model", "echo", "--prompt", "A", "--default"))
    ok(cli("users", "add", "5", "--username", "five"))
    redis = ["--context-url", redis_url.rsplit("/", 1)[0] + "/2"]
    ok(cli(*redis, "contexts", "purge", "--user", "5"))
    ok(cli(*redis, "chat", "@five", "one"))
    assert ok(cli(*redis, "chat", "5", "two")).stdout.strip() == "[alice] two (context: 2 messages)"
    doc = as_json(cli(*redis, "contexts", "show", "5", "--json"))
    assert [m["content"] for m in doc["contexts"][0]["messages"]][::2] == ["one", "two"]
    # The database's own context tables saw nothing.
    assert as_json(cli("contexts", "stats", "--json"))["contexts"] == 0
    ok(cli(*redis, "contexts", "purge", "--user", "5"))


def test_chat_errors(cli: Run) -> None:
    failed(cli("chat", "1", "hi"), 1, "no secretary available")
    ok(cli("create", "alice", "--model", "echo", "--prompt", "A", "--default"))
    failed(cli("chat", "@ghost", "hi"), 1, "no user @ghost")
    failed(cli("chat", "ghost", "hi"), 2)
    failed(cli("chat", "1", "   "), 1, "empty")


def test_chat_model_failures(cli: Run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with llm_server() as (url, script):
        monkeypatch.setenv("SECRETARIES_OPENAI_BASE_URL", url)
        monkeypatch.setenv("SECRETARIES_MODEL_RETRIES", "0")
        ok(cli("create", "gpt", "--model", "openai/m", "--prompt", "Be nice.", "--default"))
        assert ok(cli("chat", "9", "hello")).stdout.strip() == "<Be nice.> re: hello (0 earlier)"
        script.default = "503"
        failed(cli("chat", "9", "again"), 3, "HTTP 503")
        script.default = "400"
        failed(cli("chat", "9", "again"), 1, "HTTP 400")
        assert as_json(cli("contexts", "stats", "--json"))["messages"] == 2


def test_chat_piped_prints_the_reply_unchanged(cli_default: Run) -> None:
    """Off a terminal the reply is the model's text byte for byte, ESC sequences included."""
    import subprocess
    import sys

    ok(cli_default("create", "e", "--model", "echo", "--prompt", "p", "--default"))
    text = "red \x1b[31mALERT\x1b[0m and a bell \x07 [b]markup[/b]"
    done = subprocess.run(
        [sys.executable, "-m", "secretaries_cli", "chat", "1", text],
        capture_output=True,
        text=True,
        check=True,
    )
    assert text in done.stdout and "\ufffd" not in done.stdout
