"""Named model providers: add, list, remove (refused while a secretary uses one)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from secretaries_core.catalog.models import ASSISTANT_TABLE
from secretaries_core.catalog.registry.base import RegistryBase
from secretaries_core.catalog.versions_tables import VERSION_TABLE
from secretaries_core.errors import Conflict, InvalidInput, NotFound
from secretaries_core.llm.fallback import PARAM_CONTEXT_FALLBACK, fallback_models
from secretaries_core.llm.providers import (
    BUILT_IN,
    PROVIDER_NAME_RE,
    Provider,
    parse_model,
    validate_model,
)
from secretaries_core.llm.providers_table import PROVIDER_TABLE, provider_rows
from secretaries_core.redact import mask_url

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def models_of(model: str, params: object) -> list[str]:
    """Every model string a secretary's content uses: its model and its fallbacks."""
    found = [model, *fallback_models(params)]
    extra = params.get(PARAM_CONTEXT_FALLBACK) if isinstance(params, dict) else None
    if isinstance(extra, str) and extra.strip():
        found.append(extra.strip())
    return found


def check_tools(session: Session, params: object) -> None:
    """The tools a version names are registered, and its tool params are sound."""
    from secretaries_core.conversation.tooling import max_rounds, tool_timeout
    from secretaries_core.errors import InvalidInput
    from secretaries_core.tools.spec import tools_param
    from secretaries_core.tools.table import TOOL_TABLE

    if not isinstance(params, dict):
        return
    names = tools_param(params)
    if names:
        known = {r[0] for r in session.execute(select(TOOL_TABLE.c.name))}
        missing = [n for n in names if n not in known]
        if missing:
            raise InvalidInput(
                f"unknown tool(s) {', '.join(repr(n[:40]) for n in missing)} in tools: "
                "register them first (secretaries tools add), see: secretaries tools list"
            )
    max_rounds(params)
    tool_timeout(params)


class ProvidersMixin(RegistryBase):
    """The provider table and the checks that keep model strings pointing at real ones."""

    def add_provider(self, name: str, base_url: str, api_key_env: str | None = None) -> Provider:
        """Add (or replace) a provider; the key stays in the environment variable named."""
        if not PROVIDER_NAME_RE.fullmatch(name) or name in BUILT_IN:
            raise InvalidInput(
                f"invalid provider name {name!r}: 1-32 lowercase letters, digits, '-', '_', "
                f"starting with a letter, not {' or '.join(BUILT_IN)}"
            )
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"the base URL must be http(s)://host…, got {mask_url(base_url)!r}")
        if parts.password:
            raise InvalidInput(
                "put the key in an environment variable (--api-key-env), not in the URL"
            )
        if api_key_env is not None and not ENV_NAME_RE.fullmatch(api_key_env):
            raise InvalidInput(f"--api-key-env takes a variable name, got {api_key_env[:40]!r}")

        def work(session: Session) -> Provider:
            session.execute(PROVIDER_TABLE.delete().where(PROVIDER_TABLE.c.name == name))
            session.execute(
                PROVIDER_TABLE.insert().values(
                    name=name, base_url=base_url, api_key_env=api_key_env, created_at=self.clock()
                )
            )
            return Provider(name, base_url, api_key_env)

        return self._write(work, conflict=f"provider {name!r} changed meanwhile", event="provider")

    def list_providers(self) -> list[Provider]:
        """Every named provider, by name."""

        def work(session: Session) -> list[Provider]:
            return [Provider(*row) for row in provider_rows(session)]

        return self._read(work)

    def provider(self, name: str) -> Provider | None:
        """One provider, or None."""

        def work(session: Session) -> Provider | None:
            row = session.execute(
                select(PROVIDER_TABLE).where(PROVIDER_TABLE.c.name == name)
            ).first()
            return Provider(row.name, row.base_url, row.api_key_env) if row else None

        return self._read(work)

    def remove_provider(self, name: str) -> None:
        """Remove a provider no secretary (or version of one) uses; else `Conflict` naming them."""

        def work(session: Session) -> None:
            if (
                session.execute(
                    select(PROVIDER_TABLE.c.name).where(PROVIDER_TABLE.c.name == name)
                ).first()
                is None
            ):
                raise NotFound(f"no provider {name!r}", hint="; see `secretaries providers list`")
            users = sorted(
                {
                    secretary
                    for secretary, model, params in self._all_contents(session)
                    if any(parse_model(m)[0] == name for m in models_of(model, params))
                }
            )
            if users:
                raise Conflict(
                    f"provider {name!r} is used by {', '.join(users)}; change their model or "
                    "fallback_models first"
                )
            session.execute(PROVIDER_TABLE.delete().where(PROVIDER_TABLE.c.name == name))

        self._write(work, conflict=f"provider {name!r} changed meanwhile", event="provider")

    @staticmethod
    def _all_contents(session: Session) -> list[tuple[str, str, object]]:
        table = ASSISTANT_TABLE
        live = session.execute(select(table.c.name, table.c.model, table.c.params)).all()
        versions = session.execute(
            select(table.c.name, VERSION_TABLE.c.model, VERSION_TABLE.c.params).join(
                table, table.c.id == VERSION_TABLE.c.secretary_id
            )
        ).all()
        return [(r[0], r[1], r[2]) for r in [*live, *versions]]

    def _check_models(
        self, session: Session, model: str, params: object, name: str | None = None
    ) -> None:
        """Every model string of a secretary's content names a known provider, its tools
        exist, and (given its `name`) no assistant it can ask can ask it back."""
        known = [r[0] for r in session.execute(select(PROVIDER_TABLE.c.name))]
        for each in models_of(model, params):
            validate_model(each, known)
        check_tools(session, params)
        if name is not None:
            from secretaries_core.tools.nesting import refuse_cycles

            refuse_cycles(session, name, params)
