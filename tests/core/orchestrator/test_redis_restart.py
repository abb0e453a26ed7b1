"""A real Redis that loses its scripts or restarts under a running orchestrator."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from redis import Redis

from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import open_context_store
from secretaries_core.errors import BackendUnavailable
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.core.orchestrator.conftest import add
from tests.llm_server import llm_server
from tests.servers import free_port, redis_server


def test_script_flush_and_restart_under_a_running_orchestrator(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    engine = make_engine(f"sqlite:///{tmp_path / 'reg.db'}")
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    with llm_server() as (llm_url, script):
        add(registry, "alice", model="openai/m", default=True)
        settings = replace(Settings.load(env={}), openai_base_url=llm_url, model_max_retries=0)
        store = open_context_store(url, policy=settings.context_policy, prefix="rs:")
        orch = Orchestrator(registry, store, settings)
        alice = registry.get_secretary("alice").id

        async def scenario() -> None:
            with redis_server(port=port):
                assert (await orch.ahandle(1, "one")).text.endswith("(0 earlier)")
                Redis(port=port).script_flush()
                # The scripts are gone: reloaded on NoScriptError, the turn stored once.
                assert (await orch.ahandle(1, "two")).text.endswith("(2 earlier)")
                assert len(store.read(1, alice)) == 4
            # Redis is down: refused before the model is asked, and nothing lost later.
            asked = len(script.requests)
            with pytest.raises(BackendUnavailable) as down:
                await orch.ahandle(1, "while down")
            assert f"127.0.0.1:{port}" in str(down.value)
            assert len(script.requests) == asked
            # Same port, empty server (no persistence): the next message just works.
            with redis_server(port=port):
                started = time.perf_counter()
                assert (await orch.ahandle(1, "three")).text.endswith("(0 earlier)")
                assert time.perf_counter() - started < 5
                assert (await orch.ahandle(1, "four")).text.endswith("(2 earlier)")
                # And the synchronous path, on its own connections, too.
                assert orch.handle(1, "five").text.endswith("(4 earlier)")
                assert [m.content for m in store.read(1, alice) if m.role == "user"] == [
                    "three",
                    "four",
                    "five",
                ]
                await orch.aclose()
                store.close()

        asyncio.run(scenario())
    engine.dispose()
