"""Telegram front over the library (aiogram 3): end users pick their secretary in the chat.

`create_router(orchestrator)` gives the handlers for a bot author's own `Dispatcher`;
`secretaries bot` (`run.run_bot`) runs a complete bot by long polling.
"""

from secretaries_telegram.router import COMMANDS, create_router

__all__ = ["COMMANDS", "create_router"]
