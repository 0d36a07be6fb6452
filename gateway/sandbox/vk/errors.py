"""VK API error codes, their texts and the `{"error": ...}` body VK answers with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERROR_MESSAGES: dict[int, str] = {
    1: "Unknown error occurred",
    3: "Unknown method passed",
    5: "User authorization failed: invalid access_token",
    6: "Too many requests per second",
    8: "Invalid request",
    9: "Flood control",
    10: "Internal server error",
    15: "Access denied",
    100: "One of the parameters specified was missing or invalid",
    901: "Can't send messages for users without permission",
    902: "Can't send messages to this user due to their privacy settings",
    911: "Keyboard format is invalid",
    914: "Message is too long",
    917: "You don't have access to this chat",
}


class VKError(Exception):
    """Raised inside method handlers; becomes the VK error body."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        base = ERROR_MESSAGES.get(code, ERROR_MESSAGES[1])
        self.code = code
        self.message = f"{base}: {detail}" if detail else base
        super().__init__(self.message)


def invalid_param(detail: str) -> VKError:
    """Error 100, worded as VK words it ("...: random_id is a required parameter")."""
    return VKError(100, detail)


def error_body(code: int, message: str, method: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The error envelope; VK echoes the call back without the token."""
    echoed = [
        {"key": "method", "value": method},
        {"key": "oauth", "value": "1"},
        *(
            {"key": key, "value": value}
            for key, value in params.items()
            if key not in {"access_token", "method", "oauth"}
        ),
    ]
    return {"error": {"error_code": code, "error_msg": message, "request_params": echoed}}
