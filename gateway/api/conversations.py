"""Conversation endpoints: list and read dialogues, and act on them as a manager from a CRM.

The same desk actions as the managers' group (gateway/desk): a message sent here
is stored, routed to the customer's channel like a reply in the topic, and shown
in the topic; assign, release and close tell the customer what a /take,
/release or /close would.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, Field, model_validator

from gateway.api.customers import CUSTOMER_ID
from gateway.api.errors import ApiError
from gateway.api.inputs import path_id, read_body, read_query
from gateway.api.replies import json_reply
from gateway.api.routes import Reply, Route
from gateway.api.schemas import MessageOut, Request, Text, Timestamp
from gateway.api.state import DATABASE
from gateway.desk import Actor, Desk, DeskError
from storage.conversations import Conversations
from storage.customers import Customers
from storage.messages import Messages
from storage.models import Conversation

__all__ = ["DESK", "routes"]

# Set by the composition root; without it the actions answer 503.
DESK = web.AppKey("chatgate_api_desk", Desk)
CONVERSATION_ID = CUSTOMER_ID  # the same BIGINT id pattern

Status = Literal["bot", "waiting", "manager", "closed", "open"]


class ConversationQuery(BaseModel):
    status: Status | None = Field(
        default=None, description='A mode, or "open" for every one but closed.'
    )
    assignee: int | None = Field(default=None, description="The assigned manager's id.")
    limit: int = Field(default=50, ge=1, le=200)
    before: int | None = Field(default=None, description="Only conversations with a lower id.")


class ConversationOut(BaseModel):
    """A customer's one dialogue across channels."""

    id: int
    customer_id: int
    customer_name: str | None
    status: str = Field(description="bot, waiting, manager or closed: who answers now.")
    assignee_id: int | None = Field(description="The manager who owns it (status manager).")
    topic_id: int | None = Field(description="Its topic in the managers' Telegram group.")
    reply_via: str | None = Field(description="The channel a manager chose for replies.")
    last_inbound_channel: str | None
    waiting_since: Timestamp | None
    last_message_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class ConversationList(BaseModel):
    items: list[ConversationOut]
    next_before: int | None = Field(description="Pass as `before` for the next page.")


class ConversationDetail(ConversationOut):
    messages: list[MessageOut] = Field(description="The latest 50 messages, oldest first.")


class ManagerRef(Request):
    """Who acts: a known manager, or a Telegram user (made a manager on first use)."""

    manager_id: int | None = None
    telegram_user_id: int | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _someone(self) -> ManagerRef:
        if self.manager_id is None and self.telegram_user_id is None:
            raise ValueError("give manager_id or telegram_user_id")
        return self

    def actor(self) -> Actor:
        return Actor(
            telegram_user_id=self.telegram_user_id, name=self.name, manager_id=self.manager_id
        )


class ManagerMessage(ManagerRef):
    text: Text
    via: Literal["telegram", "vk", "sms", "email"] | None = Field(
        default=None, description="Reply on this channel from now on (like /via)."
    )


class SentOut(BaseModel):
    message_id: int
    conversation: ConversationOut


async def _out(conversation: Conversation, request: web.Request) -> ConversationOut:
    async with request.config_dict[DATABASE].session() as session:
        customer = await Customers(session).get(conversation.customer_id)
    return _model(conversation, customer.name)


def _model(conversation: Conversation, name: str | None) -> ConversationOut:
    assert conversation.id is not None
    return ConversationOut(
        id=conversation.id,
        customer_id=conversation.customer_id,
        customer_name=name,
        status=conversation.mode,
        assignee_id=conversation.assignee_id,
        topic_id=conversation.topic_id,
        reply_via=conversation.reply_via,
        last_inbound_channel=conversation.last_inbound_channel,
        waiting_since=conversation.waiting_since,
        last_message_at=conversation.last_message_at,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
    )


def _desk(request: web.Request) -> Desk:
    desk = request.config_dict.get(DESK)
    if desk is None:
        raise ApiError(503, "unavailable", "the managers' desk is not set up in this process")
    return desk


def _refused(exc: DeskError) -> ApiError:
    return ApiError(409, "conflict", str(exc))


async def list_conversations(request: web.Request) -> web.Response:
    query = read_query(request, ConversationQuery)
    async with request.config_dict[DATABASE].session() as session:
        rows = await Conversations(session).listing(
            status=query.status, assignee_id=query.assignee, limit=query.limit, after=query.before
        )
        customers = Customers(session)
        items = [_model(c, (await customers.get(c.customer_id)).name) for c in rows]
    more = len(items) == query.limit
    return json_reply(ConversationList(items=items, next_before=items[-1].id if more else None))


async def get_conversation(request: web.Request) -> web.Response:
    async with request.config_dict[DATABASE].session() as session:
        conversation = await Conversations(session).get(path_id(request))
        customer = await Customers(session).get(conversation.customer_id)
        recent = await Messages(session).last(path_id(request), 50)
    messages = [MessageOut.model_validate(m, from_attributes=True) for m in recent]
    base = _model(conversation, customer.name)
    return json_reply(ConversationDetail(**base.model_dump(), messages=messages))


async def send_message(request: web.Request) -> web.Response:
    body = await read_body(request, ManagerMessage)
    desk = _desk(request)
    conversation_id = path_id(request)
    try:
        if body.via is not None:
            await desk.via(conversation_id, body.via)
        message_id = await desk.reply(conversation_id, body.actor(), body.text, origin="api")
    except DeskError as exc:
        raise _refused(exc) from exc
    async with request.config_dict[DATABASE].session() as session:
        conversation = await Conversations(session).get(conversation_id)
    return json_reply(
        SentOut(message_id=message_id, conversation=await _out(conversation, request)), 201
    )


async def assign(request: web.Request) -> web.Response:
    body = await read_body(request, ManagerRef)
    try:
        conversation = await _desk(request).take(path_id(request), body.actor())
    except DeskError as exc:
        raise _refused(exc) from exc
    return json_reply(await _out(conversation, request))


async def release(request: web.Request) -> web.Response:
    body = await read_body(request, ManagerRef)
    conversation = await _desk(request).release(path_id(request), body.actor())
    return json_reply(await _out(conversation, request))


async def close(request: web.Request) -> web.Response:
    body = await read_body(request, ManagerRef)
    conversation = await _desk(request).close(path_id(request), body.actor())
    return json_reply(await _out(conversation, request))


def _action(name: str, handler: Handler, summary: str) -> Route:
    return Route(
        "POST",
        f"/api/conversations/{CONVERSATION_ID}/{name}",
        handler,
        f"{name}Conversation",
        summary,
        body=ManagerRef,
        replies={200: Reply("The conversation now", ConversationOut)},
        errors=(400, 404, 409, 422, 503),
        tags=("conversations",),
    )


routes = [
    Route(
        "GET",
        "/api/conversations",
        list_conversations,
        "listConversations",
        "Conversations by status and assignee, newest first",
        query=ConversationQuery,
        replies={200: Reply("One page", ConversationList)},
        errors=(422,),
        tags=("conversations",),
    ),
    Route(
        "GET",
        f"/api/conversations/{CONVERSATION_ID}",
        get_conversation,
        "getConversation",
        "A conversation with its latest messages across all channels",
        replies={200: Reply("The conversation", ConversationDetail)},
        errors=(404,),
        tags=("conversations",),
    ),
    Route(
        "POST",
        f"/api/conversations/{CONVERSATION_ID}/messages",
        send_message,
        "sendConversationMessage",
        "Send as a manager: stored, sent on the customer's reply channel, shown in the topic; "
        "takes the conversation if nobody owns it",
        body=ManagerMessage,
        replies={201: Reply("Stored and queued", SentOut)},
        errors=(400, 404, 409, 422, 503),
        tags=("conversations",),
    ),
    _action("assign", assign, "Assign to a manager: the bot goes silent, the customer is told"),
    _action("release", release, "Back to the bot; the customer is told"),
    _action("close", close, "Close; the customer's next message reopens it with the bot"),
]
