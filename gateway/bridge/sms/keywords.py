"""Opt-out and opt-in keywords in an SMS reply: STOP, СТОП, START, СТАРТ, ...

Only a whole message counts, as carriers and Twilio do it ("STOP PLEASE" is a
sentence, not an opt-out). Case, spaces and punctuation are ignored, so "Stop!",
" стоп. " and "OPT-OUT" match. 38-FZ art. 18 requires stopping promos at once on
request and names no words, so the Russian list is the conventional one.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["START_WORDS", "STOP_WORDS", "stop_keyword"]

STOP_WORDS = frozenset(
    {
        # Twilio's defaults and the AWS list (sms-email.md §5)
        "stop",
        "stopall",
        "unsubscribe",
        "end",
        "quit",
        "revoke",
        "optout",
        "cancel",
        "remove",
        "arret",
        # Russian
        "стоп",
        "отписка",
        "отписаться",
        "отпишите",
        "отписатся",  # a common misspelling
        "отменитьподписку",
        "стопвсе",
    }
)
START_WORDS = frozenset({"start", "unstop", "resubscribe", "старт", "подписаться", "возобновить"})


def _folded(text: str) -> str:
    return "".join(c for c in text.casefold().replace("ё", "е") if c.isalnum())


def stop_keyword(text: str) -> Literal["stop", "start"] | None:
    """ "stop" or "start" when the whole message is such a keyword, else None."""
    word = _folded(text)
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    return None
