"""Import hygiene: the library is cheap to import and the CLI's --help loads no backend."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "sqlmodel", "redis", "alembic", "pydantic", "prometheus_client")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split(".")[0] for line in out.splitlines()}


def test_importing_the_library_loads_no_backend() -> None:
    loaded = _modules_after("import secretaries_core")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_help_loads_no_backend() -> None:
    code = (
        "import sys\nfrom secretaries_cli.app import app\n"
        "sys.argv=['secretaries','--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    loaded = _modules_after(code)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_lazy_exports_resolve() -> None:
    import secretaries_core
    from secretaries_core import context

    for name in secretaries_core.__all__:
        assert getattr(secretaries_core, name) is not None
    for name in context.__all__:
        assert getattr(context, name) is not None
