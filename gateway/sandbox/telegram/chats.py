"""Bot API methods about chats and forum topics: getChat, members, admins, topic management."""

from __future__ import annotations

from typing import Any

from gateway.sandbox.telegram.errors import THREAD_NOT_FOUND, bad_request
from gateway.sandbox.telegram.params import Params
from gateway.sandbox.telegram.state import Account, BotAccount, Chat, Topic
from gateway.sandbox.telegram.world import World

ICON_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)
_ADMIN = ("administrator", "creator")
_ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_pin_messages",
    "can_manage_topics",
    "can_send_welcome_messages",
)


def member_dict(status: str, account: Account) -> dict[str, Any]:
    """A ChatMember of the given status with the fields aiogram requires for it."""
    member: dict[str, Any] = {"status": status, "user": account.to_dict()}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update({"can_be_edited": False, "is_anonymous": False, "can_promote_members": False})
        member.update(dict.fromkeys(_ADMIN_RIGHTS, True))
    elif status == "kicked":
        member["until_date"] = 0
    return member


def _account(world: World, user_id: int) -> Account | None:
    if user_id in world.users:
        return world.users[user_id]
    return next((b.account for b in world.bots.values() if b.id == user_id), None)


async def get_chat(world: World, bot: BotAccount, p: Params) -> Any:
    """getChat: ChatFullInfo."""
    chat = world.resolve_chat(bot, p.chat_id())
    return {
        **chat.to_dict(),
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": {
            "unlimited_gifts": False,
            "limited_gifts": False,
            "unique_gifts": False,
            "premium_subscription": False,
            "gifts_from_channels": False,
        },
    }


async def get_chat_member(world: World, bot: BotAccount, p: Params) -> Any:
    """getChatMember."""
    chat = world.resolve_chat(bot, p.chat_id())
    user_id = p.integer("user_id", required=True) or 0
    account = _account(world, user_id)
    if account is None:
        raise bad_request("user not found")
    if chat.type == "private":
        if user_id not in (chat.id, bot.id):
            raise bad_request("user not found")
        kicked = user_id == bot.id and chat.id in bot.blocked_by
        return member_dict("kicked" if kicked else "member", account)
    return member_dict(chat.members.get(user_id, "left"), account)


async def get_chat_administrators(world: World, bot: BotAccount, p: Params) -> Any:
    """getChatAdministrators: creator and admins, bots included."""
    chat = world.resolve_chat(bot, p.chat_id())
    if chat.type == "private":
        raise bad_request("there are no administrators in the private chat")
    return [
        member_dict(status, account)
        for user_id, status in chat.members.items()
        if status in _ADMIN and (account := _account(world, user_id)) is not None
    ]


async def get_chat_member_count(world: World, bot: BotAccount, p: Params) -> Any:
    """getChatMemberCount."""
    chat = world.resolve_chat(bot, p.chat_id())
    if chat.type == "private":
        return 2
    return sum(1 for s in chat.members.values() if s in ("member", *_ADMIN))


def _forum(world: World, bot: BotAccount, p: Params) -> Chat:
    """A forum the bot may manage topics in."""
    chat = world.writable_chat(bot, p.chat_id())
    if not chat.is_forum:
        raise bad_request("the chat is not a forum")
    if chat.members.get(bot.id) not in _ADMIN:
        raise bad_request("not enough rights to manage topics")
    return chat


def _topic(world: World, bot: BotAccount, p: Params) -> tuple[Chat, Topic]:
    chat = _forum(world, bot, p)
    topic = chat.topics.get(p.integer("message_thread_id", required=True) or 0)
    if topic is None:
        raise bad_request(THREAD_NOT_FOUND)
    return chat, topic


def create_topic(
    world: World,
    chat: Chat,
    sender: Account,
    name: str,
    icon_color: int,
    icon_custom_emoji_id: str | None = None,
) -> Topic:
    """Create a topic the way Telegram does: its id is that of a forum_topic_created message."""
    created = {"name": name, "icon_color": icon_color}
    message = world.store(chat, sender, content={"forum_topic_created": created})
    message.thread_id = message.message_id
    topic = Topic(message.message_id, name, icon_color, icon_custom_emoji_id)
    chat.topics[topic.thread_id] = topic
    return topic


async def create_forum_topic(world: World, bot: BotAccount, p: Params) -> Any:
    """createForumTopic."""
    chat = _forum(world, bot, p)
    name = p.text("name") or ""
    if not 1 <= len(name) <= 128:
        raise bad_request("TOPIC_NAME_INVALID")
    color = p.integer("icon_color") or ICON_COLORS[0]
    if color not in ICON_COLORS:
        raise bad_request("TOPIC_ICON_COLOR_INVALID")
    topic = create_topic(world, chat, bot.account, name, color, p.text("icon_custom_emoji_id"))
    return topic.to_dict()


async def edit_forum_topic(world: World, bot: BotAccount, p: Params) -> Any:
    """editForumTopic."""
    _, topic = _topic(world, bot, p)
    name = p.text("name") or topic.name
    emoji = p.text("icon_custom_emoji_id") if p.has("icon_custom_emoji_id") else None
    if len(name) > 128:
        raise bad_request("TOPIC_NAME_INVALID")
    if name == topic.name and (emoji is None or emoji == topic.icon_custom_emoji_id):
        raise bad_request("TOPIC_NOT_MODIFIED")
    topic.name = name
    if emoji is not None:
        topic.icon_custom_emoji_id = emoji
    return True


async def close_forum_topic(world: World, bot: BotAccount, p: Params) -> Any:
    """closeForumTopic."""
    _, topic = _topic(world, bot, p)
    if topic.closed:
        raise bad_request("TOPIC_NOT_MODIFIED")
    topic.closed = True
    return True


async def reopen_forum_topic(world: World, bot: BotAccount, p: Params) -> Any:
    """reopenForumTopic."""
    _, topic = _topic(world, bot, p)
    if not topic.closed:
        raise bad_request("TOPIC_NOT_MODIFIED")
    topic.closed = False
    return True


async def delete_forum_topic(world: World, bot: BotAccount, p: Params) -> Any:
    """deleteForumTopic: the topic and its messages go."""
    chat, topic = _topic(world, bot, p)
    del chat.topics[topic.thread_id]
    for message_id in [
        m.message_id for m in chat.messages.values() if m.thread_id == topic.thread_id
    ]:
        del chat.messages[message_id]
    return True


HANDLERS = {
    "getChat": get_chat,
    "getChatMember": get_chat_member,
    "getChatAdministrators": get_chat_administrators,
    "getChatMemberCount": get_chat_member_count,
    "createForumTopic": create_forum_topic,
    "editForumTopic": edit_forum_topic,
    "closeForumTopic": close_forum_topic,
    "reopenForumTopic": reopen_forum_topic,
    "deleteForumTopic": delete_forum_topic,
}
