"""A compiled flow: the flat program of frozen instructions a run interprets.

A run keeps only a `pc` into `Flow.program`, so an `if` is a `Branch` (jump to
`else_pc` when false) plus a `Jump` over the else part; `pc == len(program)`
means done. `Flow.to_json()` is what a FlowVersion row stores and
`Flow.from_json()` gives back an equal `Flow`, so a run keeps interpreting the
version it started with after the file changed. `flows/spec.py` compiles the
YAML into these (and re-exports them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, Literal

__all__ = [
    "Branch",
    "Exit",
    "Flow",
    "Goal",
    "Instruction",
    "Jump",
    "Send",
    "Split",
    "Trigger",
    "Wait",
]


@dataclass(frozen=True, slots=True)
class Wait:
    """Sleep for `duration`, until `until - before`, or until the next local `until_local`."""

    line: int
    duration: timedelta | None = None
    until: str | None = None
    before: timedelta | None = None
    until_local: time | None = None
    kind: Literal["wait"] = "wait"


@dataclass(frozen=True, slots=True)
class Send:
    """Send `template` down `channels` in order; `stop_on` holds every channel's set."""

    line: int
    name: str
    template: str | dict[str, str]
    channels: tuple[str, ...]
    mode: str
    next_channel_after: timedelta | None
    stop_on: dict[str, frozenset[str]]
    kind: Literal["send"] = "send"

    def template_for(self, variant: str | None) -> str:
        """The template name for a run in `variant` (a holdout or no split: the first one)."""
        if isinstance(self.template, str):
            return self.template
        if variant is not None and variant in self.template:
            return self.template[variant]
        return next(iter(self.template.values()))

    def templates(self) -> tuple[str, ...]:
        """Every template this send may use."""
        if isinstance(self.template, str):
            return (self.template,)
        return tuple(dict.fromkeys(self.template.values()))


@dataclass(frozen=True, slots=True)
class Branch:
    """Evaluate the segment expression `when` for the customer; false jumps to `else_pc`."""

    line: int
    when: str
    else_pc: int
    kind: Literal["branch"] = "branch"


@dataclass(frozen=True, slots=True)
class Jump:
    line: int
    pc: int
    kind: Literal["jump"] = "jump"


@dataclass(frozen=True, slots=True)
class Split:
    """Assign a sticky variant by weight; `holdout` percent of customers get nothing."""

    line: int
    name: str
    variants: dict[str, int]
    holdout: int = 0
    kind: Literal["split"] = "split"


@dataclass(frozen=True, slots=True)
class Goal:
    """An `event` within `within` counts as a conversion; `exit` ends the run on it."""

    line: int
    event: str
    within: timedelta
    exit: bool = True
    kind: Literal["goal"] = "goal"


@dataclass(frozen=True, slots=True)
class Exit:
    line: int
    kind: Literal["exit"] = "exit"


Instruction = Wait | Send | Branch | Jump | Split | Goal | Exit


@dataclass(frozen=True, slots=True)
class Trigger:
    event: str | None = None
    schedule: str | None = None
    segment: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Flow:
    """A compiled flow: what a run interprets, pinned to `version`."""

    name: str
    description: str
    purpose: str
    priority: int
    trigger: Trigger
    cancel_on: frozenset[str]
    goal: Goal | None
    caps_outcome: str
    program: tuple[Instruction, ...]
    version: str
    source: str
    path: str
    sample: dict[str, Any] = field(default_factory=dict)

    def sends(self) -> tuple[Send, ...]:
        return tuple(i for i in self.program if isinstance(i, Send))

    def split(self) -> Split | None:
        return next((i for i in self.program if isinstance(i, Split)), None)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (durations in seconds, times as HH:MM) that `from_json` reads back."""
        return {
            "name": self.name,
            "description": self.description,
            "purpose": self.purpose,
            "priority": self.priority,
            "trigger": {
                "event": self.trigger.event,
                "schedule": self.trigger.schedule,
                "segment": self.trigger.segment,
                "key": self.trigger.key,
            },
            "cancel_on": sorted(self.cancel_on),
            "goal": _instruction_json(self.goal) if self.goal else None,
            "caps_outcome": self.caps_outcome,
            "program": [_instruction_json(i) for i in self.program],
            "version": self.version,
            "source": self.source,
            "path": self.path,
            "sample": self.sample,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Flow:
        goal = _instruction(data["goal"]) if data.get("goal") else None
        assert goal is None or isinstance(goal, Goal)
        return cls(
            name=data["name"],
            description=data["description"],
            purpose=data["purpose"],
            priority=data["priority"],
            trigger=Trigger(**data["trigger"]),
            cancel_on=frozenset(data["cancel_on"]),
            goal=goal,
            caps_outcome=data["caps_outcome"],
            program=tuple(_instruction(i) for i in data["program"]),
            version=data["version"],
            source=data["source"],
            path=data["path"],
            sample=data.get("sample", {}),
        )


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _delta(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _instruction_json(i: Instruction) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": i.kind, "line": i.line}
    if isinstance(i, Wait):
        out |= {
            "duration": _seconds(i.duration),
            "until": i.until,
            "before": _seconds(i.before),
            "until_local": i.until_local.strftime("%H:%M") if i.until_local else None,
        }
    elif isinstance(i, Send):
        out |= {
            "name": i.name,
            "template": i.template if isinstance(i.template, str) else dict(i.template),
            "channels": list(i.channels),
            "mode": i.mode,
            "next_channel_after": _seconds(i.next_channel_after),
            "stop_on": {c: sorted(kinds) for c, kinds in i.stop_on.items()},
        }
    elif isinstance(i, Branch):
        out |= {"when": i.when, "else_pc": i.else_pc}
    elif isinstance(i, Jump):
        out |= {"pc": i.pc}
    elif isinstance(i, Split):
        out |= {"name": i.name, "variants": dict(i.variants), "holdout": i.holdout}
    elif isinstance(i, Goal):
        out |= {"event": i.event, "within": _seconds(i.within), "exit": i.exit}
    return out


def _instruction(data: dict[str, Any]) -> Instruction:
    kind, line = data["kind"], data["line"]
    if kind == "wait":
        local = data["until_local"]
        return Wait(
            line,
            _delta(data["duration"]),
            data["until"],
            _delta(data["before"]),
            time.fromisoformat(local) if local else None,
        )
    if kind == "send":
        return Send(
            line,
            data["name"],
            data["template"],
            tuple(data["channels"]),
            data["mode"],
            _delta(data["next_channel_after"]),
            {c: frozenset(kinds) for c, kinds in data["stop_on"].items()},
        )
    if kind == "branch":
        return Branch(line, data["when"], data["else_pc"])
    if kind == "jump":
        return Jump(line, data["pc"])
    if kind == "split":
        return Split(line, data["name"], dict(data["variants"]), data["holdout"])
    if kind == "goal":
        return Goal(line, data["event"], timedelta(seconds=data["within"]), data["exit"])
    if kind == "exit":
        return Exit(line)
    raise ValueError(f"unknown instruction kind {kind!r}")
