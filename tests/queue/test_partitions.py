"""The queue's partition count is recorded and enforced; `queue repartition` moves entries.

Real processes: a worker started with another count than the queue's refuses to start
(exit 1, both counts named); after `secretaries queue repartition N --yes` every queued
entry sits in its user's new partition, each user's entries in the order they were sent,
none lost or doubled, and a worker with N partitions then answers every one of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from secretaries_core.queue import Queue
from secretaries_core.queue.client import decode_fields
from tests.queue.test_workers import Farm, _farm, _send, model_server  # noqa: F401

pytestmark = pytest.mark.redis


@pytest.fixture
def farm(tmp_path: Path, redis_url: str, model_server: str) -> Iterator[Farm]:  # noqa: F811
    yield from _farm(tmp_path, redis_url, model_server)


def _cli(farm: Farm, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secretaries_cli", *args],
        env={**farm.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_process_with_another_partition_count_refuses_to_start(farm: Farm) -> None:
    farm.queue.check_partitions()  # the queue is made with 8
    done = _cli(farm, "worker", SECRETARIES_QUEUE_PARTITIONS="16")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Error:" in done.stderr and "8 partitions" in done.stderr and "16" in done.stderr
    assert "Traceback" not in done.stderr
    assert farm.queue.recorded_partitions() == 8


def _layout(queue: Queue, partitions: int) -> dict[int, list[tuple[int, str]]]:
    """user -> [(partition, update id)] in stream order."""
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    client = queue.client()
    for n in range(partitions):
        for _id, raw in client.xrange(queue.keys.inbound(n)):
            fields = decode_fields(raw)
            found[int(fields["telegram_id"])].append((n, fields["update_id"]))
    return found


@pytest.mark.parametrize("new", [3, 13])
def test_repartition_moves_every_entry_keeping_each_users_order(farm: Farm, new: int) -> None:
    farm.queue.check_partitions()
    updates = _send(farm, users=60, per_user=4)
    before = _layout(farm.queue, 8)
    assert sum(len(v) for v in before.values()) == len(updates)

    done = _cli(farm, "queue", "repartition", str(new), "--yes", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["partitions"] == new and doc["previous"] == 8

    after = _layout(Queue(farm.queue.url, prefix=farm.prefix, partitions=new), max(new, 8))
    assert sum(len(v) for v in after.values()) == len(updates)
    for user, entries in after.items():
        assert {n for n, _u in entries} == {user % new}, (user, entries)
        assert [u for _n, u in entries] == [u for _n, u in before[user]], user
    client = farm.queue.client()
    for n in range(new, 8):
        assert client.exists(farm.queue.keys.inbound(n)) == 0

    # The old count is refused now, the new one answers everything, once each.
    refused = _cli(farm, "worker")
    assert refused.returncode == 1 and f"{new} partitions" in refused.stderr
    farm.env["SECRETARIES_QUEUE_PARTITIONS"] = str(new)
    farm.start(1)
    replies = farm.wait_replies(len(updates))
    assert len(replies) == len(updates)
    assert len({(r["telegram_id"], r["update_id"]) for r in replies}) == len(updates)


def test_repartition_is_refused_while_a_worker_runs_and_without_yes(farm: Farm) -> None:
    farm.queue.check_partitions()
    no_yes = _cli(farm, "queue", "repartition", "4")
    assert no_yes.returncode == 1 and "--yes" in no_yes.stderr
    farm.start(1)
    client = farm.queue.client()
    deadline = time.monotonic() + 60
    while not client.zcard(farm.queue.keys.workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    running = _cli(farm, "queue", "repartition", "4", "--yes")
    assert running.returncode == 1 and "running" in running.stderr, running.stderr
    assert farm.queue.recorded_partitions() == 8
