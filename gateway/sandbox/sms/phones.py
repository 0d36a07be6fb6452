"""The sandbox's phones: every SMS to or from a number, in order, with its status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import phonenumbers

__all__ = ["Phone", "PhoneBook", "Sms", "e164"]

Direction = Literal["received", "sent"]  # as the phone sees it


def e164(raw: str) -> str | None:
    """`raw` as E.164 if it is a possible number written in international form, else None."""
    try:
        number = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(slots=True)
class Sms:
    """One message in a phone's thread.

    `received` came from the shop (Twilio's outbound-api); `sent` was typed on the
    phone and posted to chatgate's inbound webhook, whose answer `webhook_status` keeps.
    """

    sid: str
    phone: str
    direction: Direction
    body: str
    date: float
    status: str
    segments: int
    encoding: str
    error_code: int | None = None
    webhook_status: int | None = None
    callbacks: list[str] = field(default_factory=list)  # statuses reported to chatgate

    def as_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "phone": self.phone,
            "direction": self.direction,
            "body": self.body,
            "date": self.date,
            "status": self.status,
            "segments": self.segments,
            "encoding": self.encoding,
            "error_code": self.error_code,
            "webhook_status": self.webhook_status,
            "callbacks": list(self.callbacks),
        }


@dataclass(slots=True)
class Phone:
    """A handset: switched off, it gets nothing (Twilio reports 30003, unreachable)."""

    number: str
    reachable: bool = True
    messages: list[Sms] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "reachable": self.reachable,
            "messages": len(self.messages),
        }


class PhoneBook:
    """Phones by E.164 number, created on first use; messages also found by sid."""

    def __init__(self) -> None:
        self._phones: dict[str, Phone] = {}
        self._by_sid: dict[str, Sms] = {}

    def phone(self, number: str) -> Phone:
        found = self._phones.get(number)
        if found is None:
            found = self._phones[number] = Phone(number)
        return found

    def known(self) -> list[Phone]:
        return list(self._phones.values())

    def add(self, sms: Sms) -> Sms:
        self.phone(sms.phone).messages.append(sms)
        self._by_sid[sms.sid] = sms
        return sms

    def by_sid(self, sid: str) -> Sms:
        """The message with `sid`; KeyError names it when there is none."""
        try:
            return self._by_sid[sid]
        except KeyError:
            raise KeyError(f"no message {sid}") from None
