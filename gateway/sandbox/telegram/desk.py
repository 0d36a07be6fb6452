"""The sandbox's managers' group: a forum supergroup with one manager and the bot as admin.

chatgate's sandbox creates it at start when CHATGATE_MANAGERS_CHAT_ID is not set,
so the desk works out of the box; the console writes in its topics as the manager
through the control API (POST /control/groups/{chat_id}/messages with thread_id).
"""

from __future__ import annotations

from gateway.sandbox.telegram.emulator import TelegramEmulator

__all__ = ["MANAGERS_CHAT_ID", "MANAGER_USER_ID", "sandbox_desk"]

MANAGERS_CHAT_ID = -1001000000777
MANAGER_USER_ID = 700_000_001


def sandbox_desk(emulator: TelegramEmulator) -> int:
    """Create (once) the managers' forum and its manager; returns the group's chat id."""
    if MANAGERS_CHAT_ID not in emulator.world.groups:
        if MANAGER_USER_ID not in emulator.world.users:
            emulator.add_user(MANAGER_USER_ID, "Мария", "Менеджер", "sandbox_manager", None, "ru")
        emulator.create_group(
            "Менеджеры",
            owner=MANAGER_USER_ID,
            is_forum=True,
            chat_id=MANAGERS_CHAT_ID,
            notify_bots=False,
        )
    return MANAGERS_CHAT_ID
