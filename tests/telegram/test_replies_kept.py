"""Queue mode through a Bot API outage longer than the outage grace: replies are kept.

Real `secretaries bot` and `secretaries worker` processes against the Bot API double. The
grace is 1 s here and the outage lasts several times longer: every reply produced meanwhile
is delivered once, in order per chat, once the Bot API heals. With a reply max age shorter
than the outage, the replies are dropped and counted as expired instead.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

from tests.llm_server import llm_server
from tests.telegram.bot_api import BotApi, bot_api
from tests.telegram.test_bot import _env
from tests.telegram.test_bot_faults import _answers, _catalog, _start


def _run(tmp_path: Path, redis_url: str, max_age: str, outage_s: float) -> tuple[BotApi, str]:
    db_url = _catalog(tmp_path)
    prefix = f"rk{uuid.uuid4().hex[:6]}:"
    with bot_api() as (api_url, api), llm_server() as (llm_url, _script):
        env = _env(db_url, api_url, llm_url, tmp_path / "home")
        env.update(
            SECRETARIES_QUEUE_URL=redis_url,
            SECRETARIES_CONTEXT_URL=redis_url,
            SECRETARIES_REDIS_PREFIX=prefix,
            SECRETARIES_OUTAGE_GRACE="1",
            SECRETARIES_REPLY_MAX_AGE=max_age,
        )
        logs = {n: (tmp_path / f"{n}.log").open("w") for n in ("bot", "worker")}
        procs = [_start(["worker"], env, logs["worker"]), _start(["bot"], env, logs["bot"])]
        try:
            api.wait(lambda: api.seen("setMyCommands"))
            healed_at = time.monotonic() + outage_s
            api.down_until = healed_at
            for i in range(3):
                for user in (701, 702):
                    api.send(user, f"m{i} of {user}")
            if max_age == "86400":
                for user in (701, 702):
                    api.wait(lambda u=user: len(_answers(api, u)) >= 3, timeout=120)
                assert time.monotonic() >= healed_at
            else:
                bot_log = tmp_path / "bot.log"
                api.wait(lambda: bot_log.read_text().count("(expired)") >= 6, timeout=120)
            time.sleep(1.0)  # nothing more may arrive
        finally:
            told = time.monotonic()
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            # Stopped in the middle of an outage, with sends waiting it out: still gone
            # before a supervisor's SIGKILL (Docker waits 10 s).
            procs[1].wait(timeout=60)
            bot_stopped_in = time.monotonic() - told
            procs[0].wait(timeout=60)
            for log in logs.values():
                log.close()
        assert bot_stopped_in < 10.0, bot_stopped_in
        return api, (tmp_path / "bot.log").read_text()


def test_replies_outlive_an_outage_longer_than_the_grace(tmp_path: Path, redis_url: str) -> None:
    api, log = _run(tmp_path, redis_url, "86400", outage_s=4.0)
    for user in (701, 702):
        answers = _answers(api, user)
        # once each, in the order the user wrote them
        assert [a.split(" re: ")[1].split(" (")[0] for a in answers] == [
            f"m{i} of {user}" for i in range(3)
        ], answers
    assert "dropped" not in log
    assert "Traceback" not in log


def test_replies_older_than_the_max_age_are_dropped_as_expired(
    tmp_path: Path, redis_url: str
) -> None:
    api, log = _run(tmp_path, redis_url, "2", outage_s=3600.0)
    assert _answers(api, 701) == [] and _answers(api, 702) == []
    assert log.count("(expired)") == 6
