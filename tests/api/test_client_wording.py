"""What API clients read: error bodies name no CLI command; descriptions stay one line."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from secretaries_api.app import create_app
from secretaries_core.config import Settings
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.cli.conftest import Run, cli, failed, ok, private_home  # noqa: F401


def test_error_bodies_name_no_cli_command(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    engine.dispose()
    settings = Settings.load(
        env={"SECRETARIES_HOME": str(tmp_path), "SECRETARIES_DATABASE_URL": db_url}
    )
    with TestClient(create_app(settings=settings, api_token=None)) as client:
        missing = client.get("/api/secretaries/nobody")
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "no secretary 'nobody'"
        user = client.get("/api/users/5/secretary")
        assert user.status_code == 404 and "`secretaries" not in user.text
        created = client.post(
            "/api/secretaries/",
            json={"name": "a", "model": "echo", "prompt": "p", "description": "x" * 201},
        )
        assert created.status_code == 422
        assert "at most 200 characters" in created.json()["error"]["message"]


def test_a_description_over_200_characters_is_refused(cli: Run) -> None:  # noqa: F811
    failed(
        cli("create", "a", "--model", "echo", "--prompt", "p", "--description", "x" * 201),
        1,
        "at most 200 characters, got 201",
    )
    ok(cli("create", "a", "--model", "echo", "--prompt", "p", "--description", "x" * 200))
    failed(cli("update", "a", "--description", "y" * 10_000), 1, "got 10000")


def test_no_library_error_puts_a_cli_command_in_its_message() -> None:
    """CLI commands go in `hint=` (what the CLI prints after the message), never in the
    message itself, which is what API clients read: checked over the library's source."""
    import ast

    import secretaries_core

    root = Path(secretaries_core.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for arg in node.args:
                text = ast.unparse(arg) if isinstance(arg, ast.JoinedStr | ast.Constant) else ""
                if "`secretaries " in text:
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []
