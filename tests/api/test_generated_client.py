"""A client generated from the served /openapi.json by a standard generator, driven for real.

`openapi-python-client` reads the document the real `secretaries serve` process serves and
writes a typed package; calls through it (create a secretary, register a user, assign and
resolve) must work with the bearer token the document declares, and a call without the
token must be refused as the document says (401 with an `ErrorOut`).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.api.test_server import TOKEN, server  # noqa: F401  (fixture)


def _generate(base: str, tmp_path: Path) -> str:
    document = tmp_path / "openapi.json"
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=30) as response:
        document.write_bytes(response.read())
    package = "secretaries_generated_client"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(tmp_path / package),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (tmp_path / package / "client.py").exists(), done.stdout + done.stderr
    return package


def test_a_generated_client_drives_the_api(server: str, tmp_path: Path) -> None:  # noqa: F811
    package = _generate(server, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        gen: Any = importlib.import_module(package)
        api = {
            name: importlib.import_module(f"{package}.api.{group}.{name}")
            for group, name in (
                ("secretaries", "create_secretary"),
                ("users", "register_user"),
                ("users", "assign"),
                ("users", "current"),
            )
        }
        models: Any = importlib.import_module(f"{package}.models")
        client = gen.AuthenticatedClient(base_url=server, token=TOKEN)

        created = api["create_secretary"].sync(
            client=client,
            body=models.AssistantCreate(name="generated", model="echo", prompt="G"),
        )
        assert isinstance(created, models.SecretaryDetail) and created.name == "generated"

        # @racer belongs to user 42: registering it for 4242 moves it, and says so.
        registered = api["register_user"].sync(
            client=client, body=models.UserIn(telegram_id=4242, username="racer")
        )
        assert isinstance(registered, models.RegisteredOut)
        assert (registered.status, registered.username_moved_from) == ("created", 42)

        assigned = api["assign"].sync("4242", "generated", client=client)
        assert isinstance(assigned, models.AssignOut)
        current = api["current"].sync("4242", client=client)
        assert isinstance(current, models.CurrentOut)
        assert current.secretary.name == "generated" and current.source.value == "assigned"

        # Without the token: the 401 the document declares, parsed as its ErrorOut.
        anonymous = gen.Client(base_url=server)
        refused = api["current"].sync_detailed("4242", client=anonymous)
        assert refused.status_code == 401 and isinstance(refused.parsed, models.ErrorOut)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]
