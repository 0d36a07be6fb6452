"""What the sandbox's mail can fail with, shared by the post office and its endpoints."""

from __future__ import annotations

__all__ = ["MailRefused"]


class MailRefused(Exception):
    """The recipient's server refused the mail or did not answer; the message says which."""
