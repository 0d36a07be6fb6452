"""Bot API methods that send or change messages: sendMessage, media, copy, edit, callbacks."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from gateway.sandbox.telegram.errors import bad_request, too_many_requests
from gateway.sandbox.telegram.markup import format_text, utf16_len, validate_reply_markup
from gateway.sandbox.telegram.params import Params, Upload
from gateway.sandbox.telegram.state import BotAccount, Chat, StoredFile, StoredMessage
from gateway.sandbox.telegram.world import World

MAX_TEXT = 4096
MAX_CAPTION = 1024
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


def _text(p: Params, name: str, limit: int) -> tuple[str, str | None, list[dict[str, Any]]]:
    """Parsed text, raw HTML (when parse_mode=HTML) and entities; 400 if empty or too long."""
    raw = p.text(name) or ""
    parse_mode = p.text("parse_mode")
    plain, entities = format_text(raw, parse_mode)
    explicit = p.obj("caption_entities" if name == "caption" else "entities")
    if not entities and isinstance(explicit, list):
        entities = explicit
    if name == "text" and not plain.strip():
        raise bad_request("message text is empty")
    if utf16_len(plain) > limit:
        raise bad_request(f"message {'' if name == 'text' else 'caption '}is too long")
    is_html = parse_mode is not None and parse_mode.upper() == "HTML"
    return plain, raw if is_html else None, entities


def _reply_to(p: Params, chat: Chat) -> dict[str, Any]:
    """reply_to_message content for reply_parameters / reply_to_message_id."""
    params = p.obj("reply_parameters") or {}
    message_id = params.get("message_id") or p.integer("reply_to_message_id")
    if not message_id:
        return {}
    target = chat.messages.get(int(message_id))
    if target is None:
        if params.get("allow_sending_without_reply") or p.flag("allow_sending_without_reply"):
            return {}
        raise bad_request("message to be replied not found")
    replied = target.to_dict()
    replied.pop("reply_to_message", None)
    return {"reply_to_message": replied}


def _deliver(
    world: World, bot: BotAccount, chat: Chat, p: Params, method: str, **fields: Any
) -> StoredMessage:
    """Common tail of every send: thread check, flood control, then store the message."""
    thread_id = p.integer("message_thread_id")
    world.check_thread(bot, chat, thread_id)
    markup = validate_reply_markup(p.obj("reply_markup"))
    content = {**_reply_to(p, chat), **fields.pop("content", {})}
    retry_after = bot.flood.check(chat.id, chat.is_group)
    if retry_after is not None:
        raise too_many_requests(retry_after)
    return world.store(
        chat,
        bot.account,
        thread_id=thread_id,
        reply_markup=markup,
        content=content,
        method=method,
        **fields,
    )


async def send_message(world: World, bot: BotAccount, p: Params) -> Any:
    """sendMessage."""
    chat = world.writable_chat(bot, p.chat_id())
    text, html, entities = _text(p, "text", MAX_TEXT)
    message = _deliver(world, bot, chat, p, "sendMessage", text=text, html=html, entities=entities)
    return message.to_dict()


def _resolve_file(world: World, value: Upload | str | None, kind: str) -> StoredFile:
    """An uploaded file, a known file_id or a URL (not fetched: we are offline)."""
    if value is None:
        raise bad_request(f"there is no {kind} in the request")
    if isinstance(value, Upload):
        return world.files.add(value.data, value.filename, value.content_type)
    if value.startswith(("http://", "https://")):
        return world.files.add(b"", posixpath.basename(value) or kind, None, url=value)
    stored = world.files.get(value)
    if stored is None:
        raise bad_request("wrong file identifier/HTTP URL specified")
    return stored


def photo_sizes(stored: StoredFile) -> list[dict[str, Any]]:
    """PhotoSize list; the emulator keeps one size."""
    return [
        {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "width": 800,
            "height": 600,
            "file_size": len(stored.data),
        }
    ]


def document(stored: StoredFile) -> dict[str, Any]:
    """Document object."""
    doc: dict[str, Any] = {
        "file_id": stored.file_id,
        "file_unique_id": stored.unique_id,
        "file_size": len(stored.data),
    }
    if stored.name:
        doc["file_name"] = stored.name
    if stored.mime_type:
        doc["mime_type"] = stored.mime_type
    return doc


async def send_photo(world: World, bot: BotAccount, p: Params) -> Any:
    """sendPhoto."""
    return _send_file(world, bot, p, "photo", "sendPhoto", photo_sizes)


async def send_document(world: World, bot: BotAccount, p: Params) -> Any:
    """sendDocument."""
    return _send_file(world, bot, p, "document", "sendDocument", document)


def _send_file(
    world: World,
    bot: BotAccount,
    p: Params,
    kind: str,
    method: str,
    describe: Callable[[Any], Any],
) -> Any:
    """A file with an optional caption, as sendPhoto and sendDocument take it."""
    chat = world.writable_chat(bot, p.chat_id())
    stored = _resolve_file(world, p.input_file(kind), kind)
    caption, html, entities = _text(p, "caption", MAX_CAPTION)
    message = _deliver(
        world,
        bot,
        chat,
        p,
        method,
        caption=caption or None,
        html=html,
        entities=entities,
        content={kind: describe(stored)},
    )
    return message.to_dict()


async def copy_message(world: World, bot: BotAccount, p: Params) -> Any:
    """copyMessage: same content without a forward header; returns MessageId."""
    chat = world.writable_chat(bot, p.chat_id())
    source_chat = world.resolve_chat(bot, p.chat_id("from_chat_id"))
    source = source_chat.messages.get(p.integer("message_id", required=True) or 0)
    if source is None:
        raise bad_request("message to copy not found")
    if source.text is None and not source.content and source.caption is None:
        raise bad_request("message can't be copied")
    content = {k: v for k, v in source.content.items() if k != "reply_to_message"}
    caption, html, entities = source.caption, source.html, source.entities
    if p.has("caption"):
        caption, html, entities = _text(p, "caption", MAX_CAPTION)
    message = _deliver(
        world,
        bot,
        chat,
        p,
        "copyMessage",
        text=source.text,
        html=html,
        entities=list(entities),
        caption=caption,
        content=content,
    )
    return {"message_id": message.message_id}


def _own_message(world: World, bot: BotAccount, p: Params, missing: str) -> StoredMessage:
    if p.has("inline_message_id"):
        raise bad_request("inline messages are not supported by the emulator")
    chat = world.resolve_chat(bot, p.chat_id())
    message = chat.messages.get(p.integer("message_id", required=True) or 0)
    if message is None:
        raise bad_request(missing)
    if message.sender.id != bot.id:
        raise bad_request("message can't be edited")
    return message


async def edit_message_text(world: World, bot: BotAccount, p: Params) -> Any:
    """editMessageText."""
    message = _own_message(world, bot, p, "message to edit not found")
    if message.text is None:
        raise bad_request("there is no text in the message to edit")
    text, html, entities = _text(p, "text", MAX_TEXT)
    markup = validate_reply_markup(p.obj("reply_markup"))
    if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
        raise bad_request(_NOT_MODIFIED)
    message.text, message.html, message.entities = text, html, entities
    message.reply_markup, message.edit_date = markup, world.now()
    return message.to_dict()


async def edit_message_reply_markup(world: World, bot: BotAccount, p: Params) -> Any:
    """editMessageReplyMarkup."""
    message = _own_message(world, bot, p, "message to edit not found")
    markup = validate_reply_markup(p.obj("reply_markup"))
    if markup == message.reply_markup:
        raise bad_request(_NOT_MODIFIED)
    message.reply_markup, message.edit_date = markup, world.now()
    return message.to_dict()


async def delete_message(world: World, bot: BotAccount, p: Params) -> Any:
    """deleteMessage."""
    chat = world.resolve_chat(bot, p.chat_id())
    if chat.messages.pop(p.integer("message_id", required=True) or 0, None) is None:
        raise bad_request("message to delete not found")
    return True


async def answer_callback_query(world: World, bot: BotAccount, p: Params) -> Any:
    """answerCallbackQuery: records the answer for the control API."""
    query = bot.callbacks.get(p.text("callback_query_id", required=True) or "")
    if query is None or query["answer"] is not None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    query["answer"] = {
        "text": p.text("text"),
        "show_alert": p.flag("show_alert"),
        "url": p.text("url"),
        "cache_time": p.integer("cache_time"),
    }
    return True


async def send_chat_action(world: World, bot: BotAccount, p: Params) -> Any:
    """sendChatAction: recorded, no message."""
    chat = world.writable_chat(bot, p.chat_id())
    thread_id = p.integer("message_thread_id")
    world.check_thread(bot, chat, thread_id)
    chat.actions.append(
        {
            "bot_id": bot.id,
            "action": p.text("action", required=True),
            "message_thread_id": thread_id,
            "date": world.now(),
        }
    )
    return True


HANDLERS = {
    "sendMessage": send_message,
    "sendPhoto": send_photo,
    "sendDocument": send_document,
    "copyMessage": copy_message,
    "editMessageText": edit_message_text,
    "editMessageReplyMarkup": edit_message_reply_markup,
    "deleteMessage": delete_message,
    "answerCallbackQuery": answer_callback_query,
    "sendChatAction": send_chat_action,
}
