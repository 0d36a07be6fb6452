"""The dialog engine: one customer turn in, what to say and the new state out.

Pure: no clock, no I/O. The caller keeps `Reply.state` (plain JSON) in the
conversation, so the dialog survives restarts and follows the customer to
another channel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bots.dialog.answers import clean_answer, normalise_phone
from bots.dialog.hours import WorkingHours
from bots.dialog.matching import Matcher, asks_for_person
from bots.dialog.render import render_numbered
from bots.dialog.script import ButtonSpec, NodeSpec, Script
from bots.dialog.templates import fill
from gateway.channels import Button

__all__ = ["CONTACT_BUTTON_CHANNELS", "Action", "Dialog", "OutMessage", "Reply", "Turn"]

CONTACT_BUTTON_CHANNELS = frozenset({"telegram"})  # where a "share my phone" button exists
STATE_VERSION = 1
_MAX_STEPS = 50  # gotos followed in one turn; the loader refuses loops, this is a backstop
_NUMBER = re.compile(r"^\s*(\d{1,2})\s*[.)]?\s*$")

_TEXTS = {
    "ru": {
        "open": "Передаю разговор менеджеру — он скоро ответит здесь же.",
        "closed": "Сейчас мы не работаем. Менеджер ответит {next_open}.",
        "soon": "как только сможет",
        "missed": "Простите, я не понял.",
        "retry": "Не получилось разобрать ответ, попробуйте ещё раз.",
        "retry_number": "Нужен номер цифрами, например 10234.",
        "retry_phone": "Не похоже на номер телефона. Напишите, например, +7 900 123-45-67.",
        "retry_email": "Не похоже на e-mail. Напишите, например, name@example.ru.",
        "hint": "Ответьте цифрой.",
    },
    "en": {
        "open": "I'm passing the conversation to a manager, who will answer here shortly.",
        "closed": "We are closed now. A manager will answer {next_open}.",
        "soon": "as soon as possible",
        "missed": "Sorry, I didn't get that.",
        "retry": "I couldn't make that out, please try again.",
        "retry_number": "Please send the number in digits, e.g. 10234.",
        "retry_phone": "That doesn't look like a phone number. Try e.g. +44 20 7946 0958.",
        "retry_email": "That doesn't look like an e-mail. Try e.g. name@example.com.",
        "hint": "Reply with a number.",
    },
}


@dataclass(frozen=True, slots=True)
class Turn:
    """What the customer did: wrote text, pressed a button, shared a contact, arrived."""

    text: str = ""
    button: str | None = None  # Button.payload of the press
    first_contact: bool = False
    phone: str | None = None  # a contact was shared (Telegram's contact button)
    channel: str = "telegram"
    has_buttons: bool = True


@dataclass(frozen=True, slots=True)
class Action:
    """Something for the caller to do: `handoff`, `order_status`, `ask_contact`, `stop`, ..."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)  # JSON scalars


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to send. Without buttons on the channel, the options are in `text`."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    request_contact: bool = False  # Telegram: needs a reply keyboard, not an inline one


@dataclass(frozen=True, slots=True)
class Reply:
    """What to say, what to do, and the state to store for the next turn."""

    messages: list[OutMessage]
    state: dict[str, Any]
    actions: list[Action]
    understood: bool = True  # False when the bot fell back


@dataclass(slots=True)
class _State:
    node: str | None = None  # the node waiting for an answer (a choice or an ask)
    menu: list[tuple[str, str]] = field(default_factory=list)  # (payload, label) last shown
    slots: dict[str, str] = field(default_factory=dict)
    misses: int = 0
    handed_off: bool = False

    def dump(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "node": self.node,
            "menu": [list(item) for item in self.menu],
            "slots": dict(self.slots),
            "misses": self.misses,
            "handed_off": self.handed_off,
        }

    @classmethod
    def load(cls, raw: Mapping[str, Any], nodes: Mapping[str, NodeSpec]) -> _State | None:
        """The stored state, or None if there is none usable (new, foreign, damaged)."""
        if not isinstance(raw, Mapping) or raw.get("v") != STATE_VERSION:
            return None
        node = raw.get("node")
        menu = raw.get("menu")
        slots = raw.get("slots")
        misses = raw.get("misses")
        return cls(
            node=node if isinstance(node, str) and node in nodes else None,
            menu=[
                (str(item[0]), str(item[1]))
                for item in (menu if isinstance(menu, list) else [])
                if isinstance(item, list | tuple) and len(item) == 2
            ],
            slots={str(k): str(v) for k, v in slots.items()} if isinstance(slots, dict) else {},
            misses=misses if isinstance(misses, int) and misses >= 0 else 0,
            handed_off=raw.get("handed_off") is True,
        )


@dataclass(slots=True)
class _Run:
    """One turn in progress."""

    turn: Turn
    now: datetime
    context: Mapping[str, str]
    state: _State
    messages: list[OutMessage] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    understood: bool = True


class Dialog:
    """Runs a script; one instance serves every conversation (it keeps no state)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self._nodes = script.all_nodes()
        self._texts = _TEXTS[script.language]
        self._hours = (
            WorkingHours.parse(script.hours.timezone, script.hours.days) if script.hours else None
        )
        self._hours_text = self._hours.describe(script.language) if self._hours else ""
        self._targets: list[tuple[str, str]] = [
            (f"goto:{name}", variant)
            for name, node in self._nodes.items()
            for variant in node.match
        ]
        if script.menu:
            self._targets += _phrasings(self._nodes[script.menu].buttons)
        self._buttons = {
            button.payload: button
            for node in self._nodes.values()
            for row in node.buttons
            for button in row
            if button.payload
        }

    def handle(
        self,
        state: Mapping[str, Any],
        turn: Turn,
        *,
        now: datetime,
        context: Mapping[str, str] | None = None,
    ) -> Reply:
        """Answer one turn. `now` must be aware; `context` fills `{name}`-style placeholders."""
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        stored = _State.load(state, self._nodes)
        run = _Run(turn, now, context or {}, stored or _State())
        if turn.first_contact or stored is None:
            self._greet(run)
        elif turn.phone:
            self._contact(run, turn.phone)
        elif turn.button:
            self._press(run, turn.button)
        else:
            self._text(run, turn.text)
        return Reply(run.messages, run.state.dump(), run.actions, run.understood)

    # turns

    def _greet(self, run: _Run) -> None:
        slots = run.state.slots
        run.state = _State(slots=slots)
        self._enter(run, self.script.start)
        text = run.turn.text.strip()
        if text and not text.startswith("/"):
            # "где мой заказ?" as a first message: greet, then answer it if we can
            if asks_for_person(text, self.script.handoff.words):
                self._handoff(run, "asked")
            elif target := self._matcher(run).match(text):
                self._go(run, target)

    def _contact(self, run: _Run, phone: str) -> None:
        value = normalise_phone(phone) or phone
        node = self._waiting(run)
        if node and node.ask and node.ask.validate_as == "phone":
            self._filled(run, node, value)
        else:
            run.state.slots["phone"] = value

    def _press(self, run: _Run, payload: str) -> None:
        if payload in self._buttons or any(p == payload for p, _ in run.state.menu):
            run.state.misses = 0
            self._go(run, payload)
        else:
            self._missed(run)

    def _text(self, run: _Run, text: str) -> None:
        if asks_for_person(text, self.script.handoff.words):
            self._handoff(run, "asked")
            return
        node = self._waiting(run)
        if node and node.ask:
            value = clean_answer(node.ask.validate_as, text)
            if value is not None:
                self._filled(run, node, value)
                return
        number = _NUMBER.match(text)
        if number and 1 <= int(number.group(1)) <= len(run.state.menu):
            self._press(run, run.state.menu[int(number.group(1)) - 1][0])
            return
        target = self._matcher(run).match(text)
        if target:
            run.state.misses = 0
            self._go(run, target)
        else:
            self._missed(run)

    # moves

    def _go(self, run: _Run, target: str) -> None:
        kind, _, name = target.partition(":")
        if kind == "goto" and name in self._nodes:
            self._enter(run, name)
        elif kind == "action":
            self._act(run, name, {})
        else:
            self._missed(run)

    def _enter(self, run: _Run, name: str | None) -> None:
        """Run nodes from `name` until one waits for the customer or the chain ends."""
        state = run.state
        for _ in range(_MAX_STEPS):
            if name is None:
                break
            node = self._nodes[name]
            state.node, state.menu = None, []
            rows = [tuple(_button(b) for b in row) for row in node.buttons]
            contact = bool(
                node.ask
                and node.ask.contact_button
                and run.turn.has_buttons
                and run.turn.channel in CONTACT_BUTTON_CHANNELS
            )
            say = node.say_typed if node.say_typed and not contact else node.say
            if node.ask and node.ask.contact_button:
                run.actions.append(Action("ask_contact", {"slot": node.ask.slot}))
                if contact:
                    rows.append((Button(node.ask.contact_button, request_contact=True),))
            if say is not None:
                self._say(run, self._fill(run, say), tuple(rows), request_contact=contact)
            if node.action:
                data = {
                    k: self._fill(run, v) if isinstance(v, str) else v
                    for k, v in node.action.data.items()
                }
                if self._act(run, node.action.kind, data):
                    return
            if node.buttons or node.ask:
                state.node = name
                state.menu = [(b.payload, b.text) for row in node.buttons for b in row if b.payload]
                return
            name = node.goto

    def _act(self, run: _Run, kind: str, data: dict[str, Any]) -> bool:
        """Perform or pass on an action; True when it ends the bot's part."""
        if kind == "handoff":
            self._handoff(run, "script")
            return True
        run.actions.append(Action(kind, data))
        if kind == "stop":
            run.state = _State(slots=run.state.slots)
            return True
        return False

    def _filled(self, run: _Run, node: NodeSpec, value: str) -> None:
        assert node.ask is not None
        run.state.slots[node.ask.slot] = value
        run.state.misses = 0
        run.state.node, run.state.menu = None, []
        self._enter(run, node.goto)

    def _missed(self, run: _Run) -> None:
        run.understood = False
        state = run.state
        state.misses += 1
        fallback = self.script.fallback
        if state.misses >= fallback.limit:
            state.misses = 0
            if fallback.then is None:
                self._handoff(run, "misunderstood")
            else:
                self._enter(run, fallback.then)
            return
        node = self._waiting(run)
        if node and node.ask:
            retry = node.ask.retry or self._texts.get(
                f"retry_{node.ask.validate_as}", self._texts["retry"]
            )
            self._say(run, self._fill(run, retry), ())
        elif fallback.node is not None:
            self._enter(run, fallback.node)
        else:
            self._say(run, self._texts["missed"], ())

    def _handoff(self, run: _Run, reason: str) -> None:
        hours = self._hours
        is_open = hours is None or hours.is_open(run.now)
        at = None if is_open or hours is None else hours.next_opening(run.now)
        if is_open:
            text = self.script.handoff.open or self._texts["open"]
        else:
            text = self.script.handoff.closed or self._texts["closed"]
        self._say(run, self._fill(run, text), ())
        run.actions.append(
            Action(
                "handoff",
                {"reason": reason, "open": is_open, "next_open": at.isoformat() if at else None},
            )
        )
        run.state = _State(slots=run.state.slots, handed_off=True)

    # helpers

    def _waiting(self, run: _Run) -> NodeSpec | None:
        return self._nodes[run.state.node] if run.state.node else None

    def _matcher(self, run: _Run) -> Matcher:
        local: list[tuple[str, str]] = []
        for payload, label in run.state.menu:
            local.append((payload, label))
            spec = self._buttons.get(payload)
            local += [(payload, variant) for variant in spec.match] if spec else []
        return Matcher([*local, *self._targets], self.script.threshold)

    def _values(self, run: _Run) -> dict[str, str]:
        values = dict(self.script.context)
        values.update({k: v for k, v in run.context.items() if v})
        values.update(run.state.slots)
        values["hours"] = self._hours_text
        values["next_open"] = ""
        if self._hours and not self._hours.is_open(run.now):
            at = self._hours.next_opening(run.now)
            values["next_open"] = (
                self._hours.when(run.now, at, self.script.language) if at else self._texts["soon"]
            )
        return values

    def _fill(self, run: _Run, template: str) -> str:
        return fill(template, self._values(run))

    def _say(
        self,
        run: _Run,
        text: str,
        rows: tuple[tuple[Button, ...], ...],
        *,
        request_contact: bool = False,
    ) -> None:
        if rows and not run.turn.has_buttons:
            run.messages.append(OutMessage(render_numbered(text, rows, hint=self._texts["hint"])))
        else:
            run.messages.append(OutMessage(text, rows, request_contact))


def _button(spec: ButtonSpec) -> Button:
    return Button(spec.text, payload=spec.payload, url=spec.url)


def _phrasings(rows: tuple[tuple[ButtonSpec, ...], ...]) -> list[tuple[str, str]]:
    return [
        (button.payload, variant)
        for row in rows
        for button in row
        if button.payload
        for variant in (button.text, *button.match)
    ]
