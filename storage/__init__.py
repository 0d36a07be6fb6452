"""The conversation store: tables, the database handle and the repositories."""

from storage.addresses import normalize_email, normalize_phone
from storage.conversations import Conversations
from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.erasure import Erasure
from storage.errors import Conflict, InvalidAddress, NotFound, StoreError
from storage.events import Events
from storage.identities import Identities
from storage.merges import Merges
from storage.messages import HistoryItem, Messages, NewMessage
from storage.pages import Page, decode_cursor, encode_cursor

__all__ = [
    "Conflict",
    "ConsentIn",
    "Conversations",
    "Customers",
    "Database",
    "Erasure",
    "Events",
    "HistoryItem",
    "Identities",
    "InvalidAddress",
    "Merges",
    "Messages",
    "NewMessage",
    "NotFound",
    "Page",
    "StoreError",
    "decode_cursor",
    "encode_cursor",
    "normalize_email",
    "normalize_phone",
]
