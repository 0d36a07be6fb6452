"""A flow file's shape (pydantic, with clear messages) and its compilation.

The YAML is validated by the `*Spec` models; `compile_flow` turns a valid spec
into a `Flow` (`flows/program.py`, re-exported here) whose `program` is a flat
tuple of frozen instructions the engine interprets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from flows.program import (
    Branch,
    Exit,
    Flow,
    Goal,
    Instruction,
    Jump,
    Send,
    Split,
    Trigger,
    Wait,
)

__all__ = [
    "CHANNELS",
    "DEFAULT_STOP_ON",
    "ENGAGEMENTS",
    "FAILURES",
    "Branch",
    "Exit",
    "Flow",
    "FlowSpec",
    "Goal",
    "Instruction",
    "Jump",
    "Send",
    "Split",
    "Trigger",
    "Wait",
    "compile_flow",
    "describe_error",
    "format_duration",
    "merge_alternatives",
    "parse_duration",
]

CHANNELS = ("email", "telegram", "vk", "sms")
ENGAGEMENTS = ("delivered", "opened", "read", "clicked", "replied")
FAILURES = ("failed", "bounced", "blocked")
DEFAULT_STOP_ON: dict[str, frozenset[str]] = {
    "email": frozenset({"clicked", "replied"}),
    "telegram": frozenset({"read", "clicked", "replied"}),
    "vk": frozenset({"read", "clicked", "replied"}),
    "sms": frozenset({"delivered", "clicked", "replied"}),
}
STEP_KINDS = ("wait", "send", "if", "split", "goal", "exit")

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)\s*([wdhms])")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_EVENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
_PATH = re.compile(r"(event|customer)(\.[A-Za-z_][A-Za-z0-9_]*)+")


# ---------------------------------------------------------------- values


def parse_duration(value: object) -> timedelta:
    """`30s`, `15m`, `1h`, `1d`, `1w` or combinations such as `1h30m`, largest unit first."""
    text = value.strip() if isinstance(value, str) else ""
    parts = _DURATION.findall(text)
    ordered = [unit for _, unit in parts]
    if (
        not parts
        or _DURATION.sub("", text).strip()
        or ordered != sorted(set(ordered), key=lambda u: -_UNITS[u])
    ):
        raise ValueError(
            f"{value!r} is not a duration (write 30s, 15m, 1h, 1d, 1w or combinations like 1h30m)"
        )
    seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a duration: it must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text `parse_duration` reads back as `value`."""
    seconds = int(value.total_seconds())
    out = ""
    for unit, size in _UNITS.items():
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def _local_time(value: object) -> time:
    if isinstance(value, int):
        # YAML 1.1 reads an unquoted 10:00 as the sexagesimal number 600.
        raise ValueError('quote the time of day, e.g. until_local: "10:00"')
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(value).strip())
    if not match:
        raise ValueError(f'{value!r} is not a time of day (write HH:MM, e.g. "10:00")')
    return time(int(match[1]), int(match[2]))


def _channel(value: str) -> str:
    if value not in CHANNELS:
        raise ValueError(f"{value!r} is not a channel (one of {', '.join(CHANNELS)})")
    return value


def _engagement(value: str) -> str:
    if value not in ENGAGEMENTS:
        raise ValueError(
            f"{value!r} is not an engagement to stop on (one of {', '.join(ENGAGEMENTS)})"
        )
    return value


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a name: lower-case letters, digits and _")
    return value


def _event(value: str) -> str:
    if not _EVENT.fullmatch(value):
        raise ValueError(f"{value!r} is not an event type: letters, digits, _ . : -")
    return value


def _path(value: str) -> str:
    if not _PATH.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a context path such as event.data.starts_at or customer.x"
        )
    return value


def _cron(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger  # only needed to validate

    if len(value.split()) != 5:
        raise ValueError(f"{value!r} is not a cron expression: give 5 fields (m h dom mon dow)")
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a cron expression: {exc}") from exc
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
ChannelName = Annotated[str, AfterValidator(_channel)]
EventType = Annotated[str, AfterValidator(_event)]
Name = Annotated[str, AfterValidator(_name)]


def describe_error(item: Mapping[str, Any]) -> str:
    """One pydantic error in a flow author's words (no class names, no "Input")."""
    if item["type"] == "extra_forbidden":
        return f"unknown key {str(item['loc'][-1])!r}"
    if item["type"] == "missing":
        return "this key is required"
    message = str(item["msg"]).removeprefix("Value error, ").replace("Input", "value")
    return re.sub(r" or instance of \w+", "", message)


def merge_alternatives(messages: list[str]) -> str:
    """`value should be a valid string` + `... dictionary` → `... string or dictionary`."""
    prefix = "value should be a valid "
    if len(messages) > 1 and all(m.startswith(prefix) for m in messages):
        return prefix + " or ".join(m.removeprefix(prefix) for m in messages)
    return "; ".join(messages)


# ---------------------------------------------------------------- the YAML


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WaitSpec(_Spec):
    """`wait: 1h`, `wait: {until: event.data.x, before: 24h}` or `wait: {until_local: "10:00"}`."""

    duration: Duration | None = None
    until: Annotated[str, AfterValidator(_path)] | None = None
    before: Duration | None = None
    until_local: Annotated[time, BeforeValidator(_local_time)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"duration": data} if isinstance(data, (str, int)) else data

    @model_validator(mode="after")
    def _one_kind(self) -> WaitSpec:
        if self.before is not None and self.until is None:
            raise ValueError("`before` only goes with `until`")
        kinds = [k for k in ("duration", "until", "until_local") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("wait for a duration, `until` a time in the context, or `until_local`")
        return self


class SendSpec(_Spec):
    name: Name | None = None
    template: str | dict[Name, str]
    channels: list[ChannelName] = Field(min_length=1)
    mode: Literal["until_engaged", "first_available"] = "until_engaged"
    next_channel_after: Duration | None = None
    stop_on: dict[ChannelName, list[Annotated[str, AfterValidator(_engagement)]]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _consistent(self) -> SendSpec:
        twice = sorted({c for c in self.channels if self.channels.count(c) > 1})
        if twice:
            raise ValueError(f"channel {twice[0]!r} is listed twice")
        if self.mode == "first_available" and self.next_channel_after is not None:
            raise ValueError("next_channel_after only applies to mode until_engaged")
        if self.mode == "until_engaged" and len(self.channels) > 1 and not self.next_channel_after:
            raise ValueError("a cascade over several channels needs next_channel_after")
        stray = [c for c in self.stop_on if c not in self.channels]
        if stray:
            raise ValueError(f"stop_on names {stray[0]!r}, which is not in channels")
        return self


class IfSpec(_Spec):
    when: str = Field(min_length=1)
    then: list[StepSpec] = Field(min_length=1)
    else_: list[StepSpec] = Field(default_factory=list, alias="else")


class SplitSpec(_Spec):
    name: Name
    variants: dict[Name, Annotated[int, Field(gt=0)]] = Field(min_length=2)
    holdout: int = Field(default=0, ge=0, lt=100)


class GoalSpec(_Spec):
    event: EventType
    within: Duration
    exit: bool = True


class StepSpec(_Spec):
    """One step: a mapping with exactly one of wait, send, if, split, goal; or `exit`."""

    wait: WaitSpec | None = None
    send: SendSpec | None = None
    if_: IfSpec | None = Field(default=None, alias="if")
    split: SplitSpec | None = None
    goal: GoalSpec | None = None
    exit: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_exit(cls, data: Any) -> Any:
        if data == "exit":
            return {"exit": True}
        if isinstance(data, str):
            raise ValueError(f"unknown step {data!r}: a step is one of {', '.join(STEP_KINDS)}")
        if isinstance(data, dict):
            unknown = [k for k in data if k not in STEP_KINDS]
            if unknown:
                raise ValueError(
                    f"unknown step {unknown[0]!r}: a step is one of {', '.join(STEP_KINDS)}"
                )
            if len(data) != 1:
                raise ValueError(f"a step has exactly one of {', '.join(STEP_KINDS)}")
        return data

    @property
    def kind(self) -> str:
        for name in ("wait", "send", "split", "goal", "exit"):
            if getattr(self, name) is not None:
                return name
        return "if"


class TriggerSpec(_Spec):
    event: EventType | None = None
    schedule: Annotated[str, AfterValidator(_cron)] | None = None
    segment: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_trigger(self) -> TriggerSpec:
        if self.event is not None and (self.schedule or self.segment):
            raise ValueError("an event trigger stands alone: drop schedule and segment")
        if self.event is None and self.segment is None:
            raise ValueError(
                "give one trigger: event, schedule with segment, or segment (on entry)"
            )
        return self


class CapsSpec(_Spec):
    outcome: Literal["postpone", "skip", "next_channel"] = "postpone"


class FlowSpec(_Spec):
    """A whole flow file, as written."""

    name: Name
    description: str = ""
    purpose: Literal["marketing", "transactional"] = "marketing"
    priority: int = Field(default=50, ge=0, le=100)
    trigger: TriggerSpec
    key: str | None = None
    cancel_on: list[EventType] = Field(default_factory=list)
    goal: GoalSpec | None = None
    caps: CapsSpec = Field(default_factory=CapsSpec)
    sample: dict[str, Any] = Field(default_factory=dict)  # example event.data for checks
    steps: list[StepSpec] = Field(min_length=1)


IfSpec.model_rebuild()


# ---------------------------------------------------------------- compiling


Lines = dict[tuple[str | int, ...], int]


def compile_flow(
    spec: FlowSpec, *, version: str, source: str, path: str, lines: Lines | None = None
) -> Flow:
    """The program for a validated spec; `lines` maps document paths to lines."""
    where = lines or {}
    program: list[Instruction] = []
    sends = 0

    def line_of(loc: tuple[str | int, ...]) -> int:
        return where.get(loc, 0)

    def emit(steps: list[StepSpec], base: tuple[str | int, ...]) -> None:
        nonlocal sends
        for index, step in enumerate(steps):
            loc = (*base, index)
            line = line_of(loc)
            if step.wait is not None:
                w = step.wait
                program.append(Wait(line, w.duration, w.until, w.before, w.until_local))
            elif step.send is not None:
                sends += 1
                s = step.send
                stop_on = {
                    channel: frozenset(s.stop_on[channel])
                    if channel in s.stop_on
                    else DEFAULT_STOP_ON[channel]
                    for channel in s.channels
                }
                template = s.template if isinstance(s.template, str) else dict(s.template)
                program.append(
                    Send(
                        line,
                        s.name or f"send_{sends}",
                        template,
                        tuple(s.channels),
                        s.mode,
                        s.next_channel_after,
                        stop_on,
                    )
                )
            elif step.if_ is not None:
                branch_at = len(program)
                program.append(Branch(line, step.if_.when, -1))
                emit(step.if_.then, (*loc, "if", "then"))
                if step.if_.else_:
                    jump_at = len(program)
                    program.append(Jump(line, -1))
                    program[branch_at] = Branch(line, step.if_.when, len(program))
                    emit(step.if_.else_, (*loc, "if", "else"))
                    program[jump_at] = Jump(line, len(program))
                else:
                    program[branch_at] = Branch(line, step.if_.when, len(program))
            elif step.split is not None:
                sp = step.split
                program.append(Split(line, sp.name, dict(sp.variants), sp.holdout))
            elif step.goal is not None:
                g = step.goal
                program.append(Goal(line, g.event, g.within, g.exit))
            else:
                program.append(Exit(line))

    emit(spec.steps, ("steps",))
    goal = None
    if spec.goal is not None:
        goal = Goal(line_of(("goal",)), spec.goal.event, spec.goal.within, spec.goal.exit)
    return Flow(
        name=spec.name,
        description=spec.description,
        purpose=spec.purpose,
        priority=spec.priority,
        trigger=Trigger(spec.trigger.event, spec.trigger.schedule, spec.trigger.segment, spec.key),
        cancel_on=frozenset(spec.cancel_on),
        goal=goal,
        caps_outcome=spec.caps.outcome,
        program=tuple(program),
        version=version,
        source=source,
        path=path,
        sample=dict(spec.sample),
    )
