"""Telegram answers are read by response classes built once, not after every GC."""

from __future__ import annotations

import gc
import weakref

from aiogram.methods.base import Response
from aiogram.types import Message

import bots.telegram.adapter  # noqa: F401  (holds the classes)


def test_the_classes_that_read_send_and_button_answers_survive_garbage_collection() -> None:
    # Weak references only: what keeps the classes alive must be the adapter module.
    sent = weakref.ref(Response[Message])
    pressed = weakref.ref(Response[bool])
    gc.collect()
    assert sent() is not None
    assert pressed() is not None
    assert Response[Message] is sent()
