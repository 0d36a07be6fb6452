"""The managers' desk, channel-agnostic: hand-over, the mirror into topics, commands.

A conversation that needs a person is "opened" on the desk once (a compare-and-set
on its row); from then on every message of it, in and out on any channel, is
copied into its topic of the managers' group through the outbox (stored first,
sent in order through the group's lane). The Telegram side that speaks to the
group lives in bots/telegram/managers.
"""

from __future__ import annotations

from gateway.desk.commands import Actor, Desk, DeskError
from gateway.desk.mirror import Mirror
from gateway.desk.reminders import Reminders
from gateway.desk.topics import TopicBook

__all__ = ["Actor", "Desk", "DeskError", "Mirror", "Reminders", "TopicBook"]
