"""The managers' group bot: the same Telegram bot, in a forum supergroup with topics.

`adapter` sends the desk's stored copies into topics (creating and re-creating
them), `access` says who is a manager, `group` turns members' messages and
commands in the group into desk actions (gateway/desk).
"""

from __future__ import annotations

from bots.telegram.managers.access import ManagerAccess
from bots.telegram.managers.adapter import DeskAdapter
from bots.telegram.managers.group import ManagersGroup

__all__ = ["DeskAdapter", "ManagerAccess", "ManagersGroup"]
