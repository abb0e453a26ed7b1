"""The webhook's text path reads a user's text from the JSON as the router reads it from
aiogram's model: the same addressing rule, the same queue entry; anything else falls back
to the model."""

from __future__ import annotations

from typing import Any

from aiogram.types import Message, User

from secretaries_telegram.router import addressed, is_addressed, queued_text
from secretaries_telegram.webhook import _plain_text_fields

ME = User(id=999, is_bot=True, first_name="S", username="sec_bot")


def _update(text: Any, chat: dict[str, Any], **extra: Any) -> dict[str, Any]:
    message = {
        "message_id": 5,
        "date": 0,
        "chat": chat,
        "from": {"id": 42, "is_bot": False, "first_name": "U", "username": "u42"},
        "text": text,
        **extra,
    }
    return {"update_id": 7, "message": message}


def test_the_json_path_and_the_model_agree() -> None:
    private = {"id": 42, "type": "private"}
    group = {"id": -100, "type": "supergroup", "title": "g"}
    cases = [
        _update("hello", private),
        _update("hi @sec_bot, plan my day", group),
        _update("chatting among ourselves", group),
        _update(
            "yes please",
            group,
            reply_to_message={
                "message_id": 4,
                "date": 0,
                "chat": group,
                "from": {"id": 999, "is_bot": True, "first_name": "S"},
                "text": "shall I?",
            },
        ),
        _update("in a topic", group | {"is_forum": True}, message_thread_id=3),
    ]
    for case in cases:
        fields = _plain_text_fields(case)
        assert fields is not None
        update_id, user, name, chat, kind, thread, text, replied = fields
        model = Message.model_validate(case["message"])
        assert addressed(kind, replied, text, ME) == is_addressed(model, ME), case
        entry = queued_text(update_id, user, name, chat, thread, text, ME)
        assert entry.update_id == 7 and entry.chat == model.chat.id
        assert entry.thread_id == model.message_thread_id
        assert "@sec_bot" not in entry.text
    assert [addressed(*_kind(c), ME) for c in cases] == [True, True, False, True, False]


def _kind(case: dict[str, Any]) -> tuple[str, int | None, str]:
    fields = _plain_text_fields(case)
    assert fields is not None
    return fields[4], fields[7], fields[6]


def test_anything_else_goes_to_the_model() -> None:
    private = {"id": 42, "type": "private"}
    for odd in (
        _update("/start", private),
        _update(None, private),
        _update(["not", "text"], private),
        {"update_id": 7, "edited_message": _update("x", private)["message"]},
        {"update_id": "7", "message": _update("x", private)["message"]},
        {"update_id": 7, "message": {"text": "x", "chat": private}},  # no sender
        "not even a mapping",
    ):
        assert _plain_text_fields(odd) is None, odd
