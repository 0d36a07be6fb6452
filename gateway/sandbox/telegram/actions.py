"""What customers and group members do, as Python calls that enqueue the resulting updates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.sandbox.telegram.chats import create_topic, member_dict
from gateway.sandbox.telegram.errors import ControlError
from gateway.sandbox.telegram.markup import command_entities, inline_callback_data
from gateway.sandbox.telegram.messages import document, photo_sizes
from gateway.sandbox.telegram.state import Account, BotAccount, Chat
from gateway.sandbox.telegram.world import World

_ADMIN = ("administrator", "creator")


class CustomerActions:
    """Mixin for TelegramEmulator: users write, press buttons, block bots, talk in topics."""

    world: World

    def add_user(
        self,
        user_id: int | None = None,
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        phone: str | None = None,
        language_code: str | None = "en",
    ) -> Account:
        """Register a human account (phone is what request_contact will share)."""
        uid = user_id if user_id is not None else next(self.world.user_ids)
        account = Account(uid, first_name, last_name, username, phone, language_code)
        self.world.users[uid] = account
        return account

    def _private(self, user_id: int, bot_id: int | None) -> tuple[BotAccount, Account, Chat]:
        bot = self.world.bot_by_id(bot_id)
        user = self.world.user(user_id)
        if user_id in bot.blocked_by:
            raise ControlError(f"user {user_id} has blocked bot {bot.id}: unblock first")
        return bot, user, self.world.private_chat(bot, user)

    def _user_message(self, user_id: int, bot_id: int | None, **fields: Any) -> dict[str, Any]:
        bot, user, chat = self._private(user_id, bot_id)
        message = self.world.store(chat, user, **fields).to_dict()
        self.world.enqueue(bot, "message", message)
        return message

    def user_sends_text(
        self, user_id: int, text: str, *, bot_id: int | None = None, reply_to: int | None = None
    ) -> dict[str, Any]:
        """A private text message to the bot; returns the Message delivered in the update."""
        content: dict[str, Any] = {}
        if reply_to is not None:
            _, _, chat = self._private(user_id, bot_id)
            if reply_to not in chat.messages:
                raise ControlError(f"no message {reply_to} to reply to")
            content["reply_to_message"] = chat.messages[reply_to].to_dict()
        return self._user_message(
            user_id, bot_id, text=text, entities=command_entities(text), content=content
        )

    def user_starts(
        self, user_id: int, payload: str | None = None, *, bot_id: int | None = None
    ) -> dict[str, Any]:
        """The user opens t.me/<bot>?start=<payload>: the bot gets "/start <payload>"."""
        return self.user_sends_text(
            user_id, f"/start {payload}" if payload else "/start", bot_id=bot_id
        )

    def user_sends_photo(
        self,
        user_id: int,
        data: bytes = b"\x89PNG\r\n\x1a\n",
        *,
        caption: str | None = None,
        bot_id: int | None = None,
    ) -> dict[str, Any]:
        """A photo (downloadable through getFile)."""
        stored = self.world.files.add(data, "photo.jpg", "image/jpeg")
        return self._user_message(
            user_id, bot_id, caption=caption, content={"photo": photo_sizes(stored)}
        )

    def user_sends_document(
        self,
        user_id: int,
        data: bytes = b"hello",
        *,
        file_name: str = "file.txt",
        mime_type: str = "text/plain",
        caption: str | None = None,
        bot_id: int | None = None,
    ) -> dict[str, Any]:
        """A document with a file name and MIME type."""
        stored = self.world.files.add(data, file_name, mime_type)
        return self._user_message(
            user_id, bot_id, caption=caption, content={"document": document(stored)}
        )

    def user_sends_voice(
        self, user_id: int, data: bytes = b"OggS", *, duration: int = 1, bot_id: int | None = None
    ) -> dict[str, Any]:
        """A voice note."""
        stored = self.world.files.add(data, "voice.ogg", "audio/ogg")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        return self._user_message(user_id, bot_id, content={"voice": voice})

    def user_sends_location(
        self, user_id: int, latitude: float, longitude: float, *, bot_id: int | None = None
    ) -> dict[str, Any]:
        """A location pin."""
        location = {"latitude": latitude, "longitude": longitude}
        return self._user_message(user_id, bot_id, content={"location": location})

    def user_sends_sticker(
        self, user_id: int, emoji: str = "👍", *, bot_id: int | None = None
    ) -> dict[str, Any]:
        """A regular static sticker."""
        stored = self.world.files.add(emoji.encode(), "sticker.webp", "image/webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        return self._user_message(user_id, bot_id, content={"sticker": sticker})

    def user_shares_contact(self, user_id: int, *, bot_id: int | None = None) -> dict[str, Any]:
        """The user taps a request_contact button: their own, verified contact (user_id set)."""
        user = self.world.user(user_id)
        if not user.phone:
            raise ControlError(f"user {user_id} has no phone to share")
        contact: dict[str, Any] = {
            "phone_number": user.phone,
            "first_name": user.first_name,
            "user_id": user.id,
        }
        if user.last_name:
            contact["last_name"] = user.last_name
        return self._user_message(user_id, bot_id, content={"contact": contact})

    def user_sends_contact(
        self,
        user_id: int,
        phone_number: str,
        first_name: str,
        *,
        last_name: str | None = None,
        contact_user_id: int | None = None,
        bot_id: int | None = None,
    ) -> dict[str, Any]:
        """Someone else's contact from the attachment menu (user_id absent or another id)."""
        contact: dict[str, Any] = {"phone_number": phone_number, "first_name": first_name}
        if last_name:
            contact["last_name"] = last_name
        if contact_user_id is not None:
            contact["user_id"] = contact_user_id
        return self._user_message(user_id, bot_id, content={"contact": contact})

    def user_presses_button(
        self,
        user_id: int,
        message_id: int,
        data: str,
        *,
        chat_id: int | None = None,
        bot_id: int | None = None,
    ) -> str:
        """Press an inline button of a bot message; returns the callback_query id."""
        bot = self.world.bot_by_id(bot_id)
        user = self.world.user(user_id)
        if chat_id is None or chat_id == user_id:
            chat = self.world.private_chat(bot, user)
        else:
            chat = self.world.group(chat_id)
        message = chat.messages.get(message_id)
        if message is None or message.sender.id != bot.id:
            raise ControlError(f"no message {message_id} from bot {bot.id} in chat {chat.id}")
        if data not in inline_callback_data(message.reply_markup):
            raise ControlError(f"message {message_id} has no button with callback_data {data!r}")
        query_id = str(next(self.world.callback_ids))
        query = {
            "id": query_id,
            "from": user.to_dict(),
            "message": message.to_dict(),
            "chat_instance": str(-abs(chat.id) * 7919),
            "data": data,
        }
        bot.callbacks[query_id] = {"query": query, "answer": None}
        self.world.enqueue(bot, "callback_query", query)
        return query_id

    def callback_answer(self, query_id: str, *, bot_id: int | None = None) -> dict[str, Any] | None:
        """What the bot answered with answerCallbackQuery, or None if not (yet) answered."""
        record = self.world.bot_by_id(bot_id).callbacks.get(query_id)
        if record is None:
            raise ControlError(f"no callback query {query_id}")
        answer: dict[str, Any] | None = record["answer"]
        return answer

    def _my_chat_member(
        self, bot: BotAccount, chat: Chat, actor: Account, old: str, new: str
    ) -> dict[str, Any]:
        payload = {
            "chat": chat.to_dict(),
            "from": actor.to_dict(),
            "date": self.world.now(),
            "old_chat_member": member_dict(old, bot.account),
            "new_chat_member": member_dict(new, bot.account),
        }
        return self.world.enqueue(bot, "my_chat_member", payload)

    def user_blocks_bot(self, user_id: int, *, bot_id: int | None = None) -> dict[str, Any]:
        """Block: later sends get 403 and the bot gets my_chat_member member -> kicked."""
        bot, user, chat = self._private(user_id, bot_id)
        bot.blocked_by.add(user_id)
        return self._my_chat_member(bot, chat, user, "member", "kicked")

    def user_unblocks_bot(self, user_id: int, *, bot_id: int | None = None) -> dict[str, Any]:
        """Unblock: my_chat_member kicked -> member, sending works again."""
        bot = self.world.bot_by_id(bot_id)
        if user_id not in bot.blocked_by:
            raise ControlError(f"user {user_id} has not blocked bot {bot.id}")
        bot.blocked_by.discard(user_id)
        user = self.world.user(user_id)
        return self._my_chat_member(
            bot, self.world.private_chat(bot, user), user, "kicked", "member"
        )

    def create_group(
        self,
        title: str,
        *,
        members: Iterable[int] = (),
        admins: Iterable[int] = (),
        owner: int | None = None,
        bot_ids: Iterable[int] | None = None,
        bots_admin: bool = True,
        is_forum: bool = True,
        chat_id: int | None = None,
        username: str | None = None,
        notify_bots: bool = True,
    ) -> Chat:
        """A supergroup (a forum by default) with members, admins and the bots in it."""
        gid = chat_id if chat_id is not None else -next(self.world.group_ids) - 1_000_000_000_000
        chat = Chat(gid, "supergroup", title=title, is_forum=is_forum, username=username)
        for uid in members:
            chat.members[self.world.user(uid).id] = "member"
        for uid in admins:
            chat.members[self.world.user(uid).id] = "administrator"
        if owner is not None:
            chat.members[self.world.user(owner).id] = "creator"
        self.world.groups[gid] = chat
        bots = (
            self.world.bots.values()
            if bot_ids is None
            else [self.world.bot_by_id(b) for b in bot_ids]
        )
        adder = self.world.users.get(owner) if owner is not None else None
        for bot in list(bots):
            chat.members[bot.id] = "administrator" if bots_admin else "member"
            if notify_bots:
                self._my_chat_member(bot, chat, adder or bot.account, "left", chat.members[bot.id])
        return chat

    def create_topic(
        self, chat_id: int, name: str, *, by_user: int | None = None, icon_color: int = 7322096
    ) -> int:
        """A topic made by a human admin (not the bot); returns its message_thread_id."""
        chat = self.world.group(chat_id)
        if not chat.is_forum:
            raise ControlError(f"chat {chat_id} is not a forum")
        sender = self.world.user(by_user) if by_user is not None else None
        if sender is None:
            admins = [u for u, s in chat.members.items() if s in _ADMIN and u in self.world.users]
            if not admins:
                raise ControlError("no human admin in the group: pass by_user")
            sender = self.world.users[admins[0]]
        return create_topic(self.world, chat, sender, name, icon_color).thread_id

    def delete_topic(self, chat_id: int, thread_id: int) -> bool:
        """A human admin deletes a topic with its messages; bots then get "message thread
        not found" when they write to it."""
        chat = self.world.group(chat_id)
        if chat.topics.pop(thread_id, None) is None:
            raise ControlError(f"no topic {thread_id} in {chat_id}")
        for message_id in [
            m.message_id for m in chat.messages.values() if m.thread_id == thread_id
        ]:
            del chat.messages[message_id]
        return True

    def set_member(self, chat_id: int, user_id: int, status: str = "member") -> str:
        """Add a user to a group, promote or demote them: member, administrator, left."""
        if status not in ("member", "administrator", "creator", "left", "kicked"):
            raise ControlError(f"no such member status {status!r}")
        self.world.group(chat_id).members[self.world.user(user_id).id] = status
        return status

    def member_writes(
        self, chat_id: int, user_id: int, text: str, *, thread_id: int | None = None
    ) -> dict[str, Any]:
        """A group member writes, in a topic if thread_id is given; bots in the group get it."""
        chat = self.world.group(chat_id)
        user = self.world.user(user_id)
        if chat.members.get(user_id) not in ("member", *_ADMIN):
            raise ControlError(f"user {user_id} is not a member of {chat_id}")
        content: dict[str, Any] = {}
        if thread_id is not None:
            topic = chat.topics.get(thread_id)
            if topic is None:
                raise ControlError(f"no topic {thread_id} in {chat_id}")
            if topic.closed and chat.members[user_id] not in _ADMIN:
                raise ControlError(f"topic {thread_id} is closed")
            # Telegram makes topic messages replies to the topic's creation message.
            if thread_id in chat.messages:
                content["reply_to_message"] = chat.messages[thread_id].to_dict()
        message = self.world.store(
            chat,
            user,
            text=text,
            entities=command_entities(text),
            thread_id=thread_id,
            content=content,
        ).to_dict()
        for bot in self.world.bots_in(chat):
            privacy = chat.members[bot.id] not in _ADMIN and not bot.can_read_all_group_messages
            mention = f"@{bot.account.username}" in text if bot.account.username else False
            if not privacy or text.startswith("/") or mention:
                self.world.enqueue(bot, "message", message)
        return message

    def redeliver(self, update_id: int, *, bot_id: int | None = None) -> dict[str, Any]:
        """Queue a duplicate of an earlier update with the same update_id (dedupe tests)."""
        try:
            return self.world.bot_by_id(bot_id).updates.redeliver(update_id)
        except KeyError:
            raise ControlError(f"no update {update_id}") from None
