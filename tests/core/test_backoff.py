"""The one backoff policy: doubling from `first`, capped, jitter within 75-100%."""

from __future__ import annotations

from secretaries_core.plumbing.backoff import Backoff, delay


def test_delays_double_up_to_the_cap_and_start_again_after_a_reset() -> None:
    waits = Backoff(0.5, 3.0)
    assert [waits.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    waits.reset()
    assert waits.next() == 0.5
    assert delay(10_000, first=1.0, cap=30.0) == 30.0  # no overflow after many tries
    jittered = [delay(2, first=1.0, cap=30.0, jitter=True) for _ in range(200)]
    assert all(3.0 <= j <= 4.0 for j in jittered) and len(set(jittered)) > 1
