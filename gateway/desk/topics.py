"""Which topic of the managers' group a conversation has: read and set with care.

The desk's Telegram adapter asks when it sends a copy: the conversation's topic,
its name and card for a new one, and records a created topic with a
compare-and-set, so two senders never leave a conversation with two topics.
"""

from __future__ import annotations

from gateway.desk.cards import Card, card_html
from storage.conversations import Conversations
from storage.db import Database

__all__ = ["TopicBook"]


class TopicBook:
    """Conversation ↔ topic, on the store."""

    def __init__(self, db: Database, *, history: int = 10) -> None:
        self.db = db
        self.history = history

    async def topic_of(self, conversation_id: int) -> int | None:
        async with self.db.session() as session:
            return (await Conversations(session).get(conversation_id)).topic_id

    async def card_of(self, conversation_id: int) -> Card:
        """The topic's name and opening card, as of now."""
        async with self.db.session() as session:
            conversation = await Conversations(session).get(conversation_id)
            return await card_html(session, conversation, history=self.history)

    async def swap(self, conversation_id: int, old: int | None, new: int | None) -> int | None:
        """Set the topic if it still is `old`; returns the topic the conversation has now."""
        async with self.db.session() as session:
            conversations = Conversations(session)
            if await conversations.swap_topic(conversation_id, old, new):
                return new
            return (await conversations.get(conversation_id)).topic_id
