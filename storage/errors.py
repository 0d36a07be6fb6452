"""What the store refuses, as exceptions the HTTP API maps to status codes."""

from __future__ import annotations

__all__ = ["Conflict", "InvalidAddress", "NotFound", "StoreError"]


class StoreError(Exception):
    """Anything the store refuses to do."""


class NotFound(StoreError):
    """No row of `kind` with `id`."""

    def __init__(self, kind: str, id: object) -> None:
        super().__init__(f"{kind} {id!r} not found")
        self.kind = kind
        self.id = id


class Conflict(StoreError):
    """The request contradicts what is stored; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidAddress(StoreError, ValueError):
    """A phone number or email address that cannot be anyone's."""

    def __init__(self, field: str, value: str, message: str | None = None) -> None:
        super().__init__(message or f"{value!r} is not a valid {_NOUNS.get(field, field)}")
        self.field = field
        self.value = value


_NOUNS = {"phone": "phone number", "email": "email address"}
