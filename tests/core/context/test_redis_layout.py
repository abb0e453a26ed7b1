"""Redis-specific promises: TTL on every key, key layout and slots, index-driven purge."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from redis.cluster import RedisCluster

from secretaries_core.context import ContextPolicy, Message, RedisContextStore, open_context_store
from secretaries_core.errors import BackendUnavailable, InvalidInput
from tests.context_fixtures import POLICY, StoreHandle, make_store
from tests.servers import free_port


@pytest.fixture(params=["redis", "cluster"])
def rhandle(request: pytest.FixtureRequest) -> Iterator[StoreHandle]:
    """A Redis-backed store, on a single server and on the cluster."""
    yield from make_store(request, request.param)


def _keys(raw: Redis | RedisCluster, prefix: str) -> list[bytes]:
    if isinstance(raw, RedisCluster):
        return list(raw.scan_iter(match=f"{prefix}*", target_nodes=RedisCluster.PRIMARIES))
    return list(raw.scan_iter(match=f"{prefix}*"))


def msg(text: str) -> Message:
    return Message("user", text, datetime.now(UTC))


def test_no_key_ever_lacks_a_ttl(rhandle: StoreHandle) -> None:
    store = rhandle.store
    assert isinstance(store, RedisContextStore) and rhandle.raw is not None
    long = ContextPolicy(timedelta(days=30), 3)
    for i in range(30):
        user, sec = 10 + i % 4, uuid.UUID(int=i % 3 + 1)
        store.append(user, sec, msg(f"m{i}"), policy=long if i % 5 == 0 else None)
        if i % 7 == 0:
            store.read(user, sec)
        if i % 11 == 0:
            store.clear(user, sec)
    store.erase_user(11)
    store.purge(older_than=timedelta(hours=2))
    store.erase_secretary(uuid.UUID(int=2))
    keys = _keys(rhandle.raw, store.prefix)
    assert keys, "the scenario should leave some keys"
    for key in keys:
        ttl = rhandle.raw.pttl(key)
        assert ttl > 0, (key, ttl)
    # Indexes live at least as long as the longest context they list.
    longest = max(rhandle.raw.pttl(k) for k in keys if b":ctx:" in k)
    assert rhandle.raw.pttl(store.activity_key) >= longest - 1000


def test_key_layout_and_cluster_slots(rhandle: StoreHandle) -> None:
    store = rhandle.store
    assert isinstance(store, RedisContextStore) and rhandle.raw is not None
    sec = uuid.uuid4()
    store.append(424242, sec, msg("x"))
    key = store.context_key(424242, sec)
    assert key.startswith(store.prefix) and "424242" in key and sec.hex in key
    assert rhandle.raw.exists(key) == 1
    assert rhandle.raw.exists(store.user_index_key(424242)) == 1
    slot = rhandle.raw.keyslot if isinstance(rhandle.raw, RedisCluster) else None
    if slot is not None:
        other = uuid.uuid4()
        assert slot(store.context_key(424242, sec)) == slot(store.context_key(424242, other))
        assert slot(key) == slot(store.user_index_key(424242))


def test_purge_repairs_index_entries_of_expired_keys(rhandle: StoreHandle) -> None:
    store = rhandle.store
    assert isinstance(store, RedisContextStore) and rhandle.raw is not None
    raw = rhandle.raw
    short = ContextPolicy(timedelta(milliseconds=300), 5)
    sec = uuid.UUID(int=9)
    store.append(1, sec, msg("ephemeral"), policy=short)
    store.append(2, sec, msg("long-lived but idle"))  # keeps the indexes alive
    time.sleep(0.6)
    store.append(3, sec, msg("fresh"))
    assert raw.exists(store.context_key(1, sec)) == 0
    assert raw.zscore(store.activity_key, f"1:{sec.hex}") is not None  # stale entry
    assert store.stats().contexts == 2  # stats skip it
    assert store.purge(older_than=timedelta(milliseconds=400)) == 2
    assert raw.zscore(store.activity_key, f"1:{sec.hex}") is None
    assert raw.zscore(store.secretary_index_key(sec), "1") is None
    assert raw.zscore(store.activity_key, f"2:{sec.hex}") is None
    assert raw.zscore(store.activity_key, f"3:{sec.hex}") is not None
    assert [c.user_id for c in store.iter_contexts()] == [3]


def test_purge_never_walks_the_keyspace(rhandle: StoreHandle) -> None:
    store = rhandle.store
    assert isinstance(store, RedisContextStore) and rhandle.raw is not None
    raw = rhandle.raw
    for i in range(50):
        store.append(i, uuid.UUID(int=1 + i % 2), msg("x"))
    nodes = {"target_nodes": RedisCluster.PRIMARIES} if isinstance(raw, RedisCluster) else {}
    raw.config_resetstat(**nodes)
    time.sleep(0.05)
    store.purge(older_than=timedelta(milliseconds=1))
    store.erase_user(3)
    store.erase_secretary(uuid.UUID(int=1))
    stats = raw.info("commandstats", **nodes)
    per_node = stats.values() if isinstance(raw, RedisCluster) else [stats]
    for node_stats in per_node:
        assert not any(name in node_stats for name in ("cmdstat_scan", "cmdstat_keys")), node_stats


def test_large_purge_in_batches(request: pytest.FixtureRequest) -> None:
    handle = next(make_store(request, "redis"))
    store = handle.store
    sec = uuid.UUID(int=5)
    n = 100_000
    at = datetime.now(UTC)
    store.append_many((uid, sec, Message("user", "x", at)) for uid in range(n))
    assert store.purge(older_than=timedelta(0), dry_run=True) == n
    batches: list[int] = []
    assert (
        store.purge(
            older_than=timedelta(0), batch_size=5000, progress=lambda d, t: batches.append(d)
        )
        == n
    )
    assert len(batches) == n // 5000 + 1 and batches[-1] == n
    assert store.stats().contexts == 0
    handle.reset()


def test_unreachable_redis_is_backend_unavailable() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    store = open_context_store(url, policy=POLICY)
    with pytest.raises(BackendUnavailable) as err:
        store.read(1, uuid.uuid4())
    assert "hunter2" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(BackendUnavailable):
        open_context_store(f"redis+cluster://:pw@127.0.0.1:{free_port()}", policy=POLICY)


def test_unknown_scheme_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="unknown context store URL"):
        open_context_store("memcached://x", policy=POLICY)
