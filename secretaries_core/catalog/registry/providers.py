"""Named model providers: add, list, remove (refused while a secretary uses one)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from secretaries_core.catalog import providers
from secretaries_core.catalog.registry.base import RegistryBase
from secretaries_core.catalog.secretary_writes import check_models
from secretaries_core.catalog.secretary_writes import check_tools as check_tools
from secretaries_core.llm.model_names import Provider
from secretaries_core.llm.providers_table import provider_rows


class ProvidersMixin(RegistryBase):
    """The provider table and the checks that keep model strings pointing at real ones."""

    def add_provider(self, name: str, base_url: str, api_key_env: str | None = None) -> Provider:
        """Add (or replace) a provider; the key stays in the environment variable named."""
        return self._write(
            lambda session: providers.add_provider(
                session, name, base_url, api_key_env, self.clock()
            ),
            conflict=f"provider {name!r} changed meanwhile",
            event="provider",
        )

    def list_providers(self) -> list[Provider]:
        """Every named provider, by name."""

        def work(session: Session) -> list[Provider]:
            return [Provider(*row) for row in provider_rows(session)]

        return self._read(work)

    def remove_provider(self, name: str) -> None:
        """Remove a provider no secretary (or version of one) uses; else `Conflict` naming them."""
        self._write(
            lambda session: providers.remove_provider(session, name),
            conflict=f"provider {name!r} changed meanwhile",
            event="provider",
        )

    def _check_models(
        self, session: Session, model: str, params: object, name: str | None = None
    ) -> None:
        """Every model string of a secretary's content names a known provider, its tools
        exist, and (given its `name`) no assistant it can ask can ask it back."""
        check_models(session, model, params, name)
