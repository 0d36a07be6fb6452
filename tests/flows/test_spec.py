"""The flow file's shape and the program it compiles to."""

from __future__ import annotations

import json
from datetime import time, timedelta
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from flows.loader import load_flows
from flows.spec import (
    DEFAULT_STOP_ON,
    Branch,
    Exit,
    Flow,
    FlowSpec,
    Goal,
    Instruction,
    Jump,
    Send,
    Split,
    Wait,
    compile_flow,
    format_duration,
    parse_duration,
)
from gateway.config import SHIPPED_FLOWS


def _spec(steps: str, **top: Any) -> FlowSpec:
    data = {"name": "f", "trigger": {"event": "e"}, **top, "steps": yaml.safe_load(steps)}
    return FlowSpec.model_validate(data)


def _flow(steps: str, **top: Any) -> Flow:
    return compile_flow(_spec(steps, **top), version="v1", source="", path="f.yaml")


def _walk(program: tuple[Instruction, ...], condition: bool) -> list[str]:
    """What a run does, interpreting Branch/Jump the way the engine must."""
    done, pc = [], 0
    while pc < len(program):
        step = program[pc]
        if isinstance(step, Branch):
            pc = pc + 1 if condition else step.else_pc
            continue
        if isinstance(step, Jump):
            pc = step.pc
            continue
        if isinstance(step, Exit):
            done.append("exit")
            break
        done.append(step.name if isinstance(step, Send) else step.kind)
        pc += 1
    return done


IF_ELSE = """
- wait: 1h
- if:
    when: "tag = 'vip'"
    then:
      - send: {name: vip, template: t, channels: [telegram]}
      - if:
          when: "channel = 'sms'"
          then: [{send: {name: vip_sms, template: t, channels: [sms]}}]
    else:
      - send: {template: t, channels: [email]}
      - exit
- send: {template: t, channels: [vk]}
"""


def test_if_else_compiles_to_branches_and_jumps() -> None:
    flow = _flow(IF_ELSE)
    assert [i.kind for i in flow.program] == [
        "wait", "branch", "send", "branch", "send", "jump", "send", "exit", "send",
    ]  # fmt: skip
    assert _walk(flow.program, condition=True) == ["wait", "vip", "vip_sms", "send_4"]
    assert _walk(flow.program, condition=False) == ["wait", "send_3", "exit"]


def test_send_defaults_are_filled_in() -> None:
    flow = _flow("[{send: {template: t, channels: [email, sms], next_channel_after: 2h}}]")
    (send,) = flow.sends()
    assert send.name == "send_1"
    assert send.mode == "until_engaged"
    assert send.next_channel_after == timedelta(hours=2)
    assert send.stop_on == {"email": DEFAULT_STOP_ON["email"], "sms": DEFAULT_STOP_ON["sms"]}
    assert send.stop_on["email"] == frozenset({"clicked", "replied"})
    custom = _flow(
        "[{send: {template: t, channels: [telegram, sms], next_channel_after: 1h,"
        " stop_on: {telegram: [replied]}}}]"
    ).sends()[0]
    assert custom.stop_on["telegram"] == frozenset({"replied"})
    assert custom.stop_on["sms"] == frozenset({"delivered", "clicked", "replied"})
    assert flow.purpose == "marketing"
    assert flow.priority == 50
    assert flow.caps_outcome == "postpone"


def test_waits_splits_goals_compile() -> None:
    flow = _flow(
        """
- wait: 1h30m
- wait: {until: event.data.starts_at, before: 24h}
- wait: {until_local: "10:00"}
- split: {name: s, variants: {a: 70, b: 30}, holdout: 10}
- send: {template: {a: ta, b: tb}, channels: [sms]}
- goal: {event: purchase, within: 2d, exit: false}
""",
        goal={"event": "purchase", "within": "3d"},
        cancel_on=["order_placed"],
        key="{{ event.data.cart_id }}",
    )
    assert flow.program[:4] == (
        Wait(0, duration=timedelta(hours=1, minutes=30)),
        Wait(0, until="event.data.starts_at", before=timedelta(hours=24)),
        Wait(0, until_local=time(10, 0)),
        Split(0, "s", {"a": 70, "b": 30}, 10),
    )
    send = flow.program[4]
    assert isinstance(send, Send)
    assert (send.template_for("b"), send.template_for(None)) == ("tb", "ta")
    assert send.templates() == ("ta", "tb")
    assert flow.program[5] == Goal(0, "purchase", timedelta(days=2), exit=False)
    assert flow.goal == Goal(0, "purchase", timedelta(days=3), exit=True)
    assert flow.cancel_on == frozenset({"order_placed"})
    assert flow.trigger.key == "{{ event.data.cart_id }}"


def test_json_round_trip_is_exact_for_every_shipped_flow() -> None:
    flows = load_flows(SHIPPED_FLOWS).flows
    assert set(flows) == {"abandoned_cart", "order_reminder", "winback", "promo_broadcast"}
    for flow in [*flows.values(), _flow(IF_ELSE)]:
        stored = json.loads(json.dumps(flow.to_json()))  # what a FlowVersion row keeps
        assert Flow.from_json(stored) == flow
        assert Flow.from_json(stored).to_json() == flow.to_json()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400), ("1w", 604800), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize("text", ["3 days", "1x", "", "30m1h", "0s", "1h1h", 90, "h"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("steps", "top", "message"),
    [
        ("[{send: {template: t, channels: [fax]}}]", {}, "'fax' is not a channel"),
        ("[{send: {template: t, channels: [sms, sms]}}]", {}, "listed twice"),
        ("[{send: {template: t, channels: [sms, email]}}]", {}, "needs next_channel_after"),
        (
            "[{send: {template: t, channels: [sms], mode: first_available, "
            "next_channel_after: 1h}}]",
            {},
            "only applies to mode until_engaged",
        ),
        (
            "[{send: {template: t, channels: [sms], stop_on: {email: [clicked]}}}]",
            {},
            "not in channels",
        ),
        (
            "[{send: {template: t, channels: [sms], stop_on: {sms: [failed]}}}]",
            {},
            "not an engagement",
        ),
        ("[{send: {template: t, channels: [sms], mode: burst}}]", {}, "until_engaged"),
        ("[{wait: {before: 1h}}]", {}, "`before` only goes with `until`"),
        ("[{wait: {until: starts_at}}]", {}, "context path"),
        ("[{wait: {until_local: 10:00}}]", {}, "quote the time"),
        ("[{wait: {until_local: '25:00'}}]", {}, "not a time of day"),
        ("[{split: {name: s, variants: {a: 1}}}]", {}, "at least 2"),
        ("[{split: {name: s, variants: {a: 1, b: 1}, holdout: 100}}]", {}, "less than 100"),
        ("[{frobnicate: 1}]", {}, "unknown step 'frobnicate'"),
        ("[{wait: 1h, exit: true}]", {}, "exactly one of"),
        ("[exiit]", {}, "unknown step 'exiit'"),
        ("[]", {}, "at least 1"),
        ("[exit]", {"trigger": {"event": "e", "schedule": "0 10 * * 1"}}, "stands alone"),
        ("[exit]", {"trigger": {"schedule": "0 10 * * 1"}}, "give one trigger"),
        ("[exit]", {"trigger": {"schedule": "0 25 * * 1", "segment": "x"}}, "not a cron"),
        ("[exit]", {"trigger": {"schedule": "daily", "segment": "x"}}, "5 fields"),
        ("[exit]", {"priority": 101}, "less than or equal to 100"),
        ("[exit]", {"purpose": "spam"}, "'marketing' or 'transactional'"),
        ("[exit]", {"caps": {"outcome": "drop"}}, "postpone"),
    ],
)
def test_shape_mistakes_are_refused_clearly(steps: str, top: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        _spec(steps, **top)
    assert message in str(info.value)
