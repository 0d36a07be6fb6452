"""The shape of a dialog script, as pydantic models of its YAML.

Only the shape lives here; cross-references (unknown nodes, undefined
placeholders, working hours) are checked by `bots.dialog.loader`, which knows
the line each value came from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "TERMINAL_ACTIONS",
    "ActionSpec",
    "AskSpec",
    "ButtonSpec",
    "FallbackSpec",
    "FaqEntry",
    "HandoffSpec",
    "HoursSpec",
    "NodeSpec",
    "Script",
]

TERMINAL_ACTIONS = frozenset({"handoff", "stop"})  # the bot stops talking after these

Scalar = str | int | float | bool | None


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ButtonSpec(_Spec):
    """One button: it goes to a node, performs an action or opens a link."""

    text: str = Field(min_length=1)
    goto: str | None = None
    action: str | None = None
    url: str | None = None
    match: tuple[str, ...] = ()  # more ways to say it in free text

    @property
    def payload(self) -> str | None:
        """What a press reports back; stable while the target keeps its name."""
        if self.goto is not None:
            return f"goto:{self.goto}"
        if self.action is not None:
            return f"action:{self.action}"
        return None


class AskSpec(_Spec):
    """Wait for free text and keep it in a named slot."""

    slot: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    validate_as: Literal["text", "number", "phone", "email"] = Field("text", alias="validate")
    retry: str | None = None  # said when the answer does not validate
    contact_button: str | None = None  # Telegram's "share my phone" button label


class ActionSpec(_Spec):
    """Something only the caller can do: hand off, look an order up, stop."""

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    data: dict[str, Scalar] = Field(default_factory=dict)


def _rows(value: Any) -> Any:
    """Accept a lone button as a one-button row: `- {text: ..., goto: ...}`."""
    if isinstance(value, list):
        return [[row] if isinstance(row, dict) else row for row in value]
    return value


class NodeSpec(_Spec):
    """A step of the dialog; what it does depends on which fields it has."""

    say: str | None = None
    say_typed: str | None = None  # instead of `say` where no contact button can be shown
    buttons: tuple[tuple[ButtonSpec, ...], ...] = ()
    ask: AskSpec | None = None
    action: ActionSpec | None = None
    goto: str | None = None
    match: tuple[str, ...] = ()  # free text that jumps here from anywhere

    lone_buttons = field_validator("buttons", mode="before")(_rows)

    @field_validator("action", mode="before")
    @classmethod
    def short_action(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


class FaqEntry(_Spec):
    """A question asked in many ways and its answer; its id is a node name too."""

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    questions: tuple[str, ...] = Field(min_length=1)
    answer: str
    buttons: tuple[tuple[ButtonSpec, ...], ...] = ()
    goto: str | None = None

    lone_buttons = field_validator("buttons", mode="before")(_rows)


class HoursSpec(_Spec):
    """When people answer: `mon-fri: "09:00-20:00"`, `sun: closed`."""

    timezone: str
    days: dict[str, str | Literal[False] | None]


class HandoffSpec(_Spec):
    """What the bot says when it hands the conversation to a person."""

    words: tuple[str, ...] = ()  # more phrases that ask for a person
    open: str | None = None
    closed: str | None = None  # may use {next_open}


class FallbackSpec(_Spec):
    """What happens when the bot does not understand."""

    node: str | None = None  # said on each misunderstanding
    limit: int = Field(2, ge=1)  # misunderstandings in a row before `then`
    then: str | None = None  # a node, typically one offering a person; none: hand off


class Script(_Spec):
    """A whole dialog script."""

    name: str = "dialog"
    language: Literal["ru", "en"] = "ru"
    start: str
    menu: str | None = None  # its buttons are understood in free text everywhere
    threshold: float = Field(0.62, gt=0, le=1)
    context: dict[str, str] = Field(default_factory=dict)  # placeholders and defaults
    hours: HoursSpec | None = None
    handoff: HandoffSpec = HandoffSpec()
    fallback: FallbackSpec = FallbackSpec()
    nodes: dict[str, NodeSpec]
    faq: tuple[FaqEntry, ...] = ()

    def all_nodes(self) -> dict[str, NodeSpec]:
        """Nodes and FAQ entries in one namespace (an answer is a node that says it)."""
        nodes = dict(self.nodes)
        for entry in self.faq:
            nodes[entry.id] = NodeSpec(
                say=entry.answer, buttons=entry.buttons, goto=entry.goto, match=entry.questions
            )
        return nodes
