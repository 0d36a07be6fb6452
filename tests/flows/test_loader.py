"""Loading a flows folder: each bad file refused with the right line, versions, lookups."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.loader import FlowError, FlowErrors, check_flows, load_flows
from gateway.config import SHIPPED_FLOWS

GOOD = """\
name: cart
description: Nudge a cart
trigger:
  event: cart_abandoned
key: "{{ event.data.cart_id }}"
cancel_on: [order_placed]
sample: {cart_id: c1}
steps:
  - wait: 1h
  - send:
      template: nudge
      channels: [email, telegram, sms]
      next_channel_after: 4h
"""

NUDGE = """\
text: "Cart {{ event.data.cart_id }} is waiting, {{ customer.name }}"
email:
  subject: "Your cart {{ event.data.cart_id }}"
"""


def _folder(tmp_path: Path, flows: dict[str, str], templates: dict[str, str] | None = None) -> Path:
    (tmp_path / "templates").mkdir()
    for name, text in flows.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    for name, text in (templates if templates is not None else {"nudge": NUDGE}).items():
        (tmp_path / "templates" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def _errors(tmp_path: Path, flow: str, templates: dict[str, str] | None = None) -> list[str]:
    return [str(e) for e in check_flows(_folder(tmp_path, {"cart": flow}, templates))]


def test_a_good_folder_loads() -> None:
    assert check_flows(SHIPPED_FLOWS) == []
    flows = load_flows(SHIPPED_FLOWS)
    assert [f.name for f in flows.by_event("cart_abandoned")] == ["abandoned_cart"]
    assert [f.name for f in flows.cancelled_by("order_placed")] == ["abandoned_cart"]
    assert [f.name for f in flows.scheduled()] == ["winback", "promo_broadcast"]  # by priority
    assert flows.segment_entry() == []
    assert flows.get("winback") is flows.flows["winback"]
    assert flows.get("nope") is None
    assert "cart_reminder" in flows.templates


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (  # a typo'd key
            "      channels: [email, telegram, sms]",
            "      chanels: [email, telegram, sms]",
            [
                "cart.yaml:10: steps[1].send.channels: this key is required",
                "cart.yaml:12: steps[1].send.chanels: unknown key 'chanels'"
                " (did you mean 'channels'?)",
            ],
        ),
        (  # a wrong channel
            "[email, telegram, sms]",
            "[email, fax, sms]",
            [
                "cart.yaml:12: steps[1].send.channels[1]: 'fax' is not a channel"
                " (one of email, telegram, vk, sms)"
            ],
        ),
        (  # a bad duration
            "  - wait: 1h",
            "  - wait: 1 hour",
            [
                "cart.yaml:9: steps[0].wait: '1 hour' is not a duration"
                " (write 30s, 15m, 1h, 1d, 1w or combinations like 1h30m)"
            ],
        ),
        (  # a missing template
            "template: nudge",
            "template: nudge2",
            [
                "cart.yaml:11: steps[1].send.template: no template 'nudge2'"
                " (looked for templates/nudge2.yaml)"
            ],
        ),
        (  # a wrong step
            "  - wait: 1h",
            "  - sleep: 1h",
            [
                "cart.yaml:9: steps[0]: unknown step 'sleep': a step is one of wait, send, if,"
                " split, goal, exit"
            ],
        ),
        (  # the name must match the file
            "name: cart",
            "name: basket",
            ["cart.yaml:1: name: 'basket' must match the file name 'cart'"],
        ),
        (  # a duplicate key
            "description: Nudge a cart",
            "description: Nudge a cart\ndescription: again",
            ["cart.yaml:3: description: duplicate key (first at line 2)"],
        ),
        (  # broken YAML
            "  - wait: 1h",
            "  - wait: [1h",
            ["cart.yaml:10: YAML syntax: expected ',' or ']', but got ':'"],
        ),
        (  # a bad segment in a trigger
            "  event: cart_abandoned",
            "  schedule: '0 10 * * 1'\n  segment: \"tag = 'vip' and\"",
            ["cart.yaml:5: trigger.segment: segment: at 16: expected a condition, found the end"],
        ),
        (  # an undefined variable in the key
            "{{ event.data.cart_id }}",
            "{{ event.data.basket }}",
            ["cart.yaml:5: key: key template: 'dict object' has no attribute 'basket'"],
        ),
    ],
)
def test_bad_files_are_refused_with_the_right_line(
    tmp_path: Path, old: str, new: str, expected: list[str]
) -> None:
    assert old in GOOD
    assert _errors(tmp_path, GOOD.replace(old, new)) == expected


def test_an_undefined_template_variable_is_refused_at_check_time(tmp_path: Path) -> None:
    nudge = (
        NUDGE + "sms:\n  text: >-\n    Cart {{ event.data.cart_id }}\n    {{ event.data.coupon }}\n"
    )
    assert _errors(tmp_path, GOOD, {"nudge": nudge}) == [
        "templates/nudge.yaml:6: sms.text: undefined: 'dict object' has no attribute 'coupon'"
        " (used by cart.yaml steps[1])"
    ]


def test_template_problems_for_the_channels_a_send_uses(tmp_path: Path) -> None:
    no_subject = 'text: "Cart {{ event.data.cart_id }}"\n'
    assert _errors(tmp_path, GOOD, {"nudge": no_subject}) == [
        "templates/nudge.yaml:1: email: an email needs `email.subject` (used by cart.yaml steps[1])"
    ]
    # Without email among the channels the same template is fine.
    other = tmp_path / "other"
    other.mkdir()
    flow = GOOD.replace("[email, telegram, sms]", "[telegram, sms]")
    assert _errors(other, flow, {"nudge": no_subject}) == []


def test_sms_limit_is_checked_with_the_sample(tmp_path: Path) -> None:
    long = NUDGE + 'sms: {text: "{{ event.data.cart_id * 200 }}", max_segments: 1}\n'
    (error,) = _errors(tmp_path, GOOD, {"nudge": long})
    assert error.startswith("templates/nudge.yaml:4: sms.text: the text needs 3 gsm SMS parts")


SPLIT = """\
name: cart
trigger: {event: cart_abandoned}
sample: {cart_id: c1}
steps:
  - split: {name: test, variants: {a: 50, b: 50}}
  - if:
      when: "tag = 'vip' or"
      then:
        - send: {name: one, template: {a: nudge, c: nudge}, channels: [sms]}
  - send: {name: one, template: nudge, channels: [telegram]}
  - split: {name: again, variants: {x: 1, y: 1}}
"""


def test_cross_checks_name_their_lines(tmp_path: Path) -> None:
    assert _errors(tmp_path, SPLIT) == [
        "cart.yaml:7: steps[1].if.when: segment: at 15: expected a condition, found the end",
        "cart.yaml:9: steps[1].if.then[0].send.template: give one template per variant of the"
        " split: a, b",
        "cart.yaml:10: steps[2]: step name 'one' is already used at line 9",
        "cart.yaml:11: steps[3].split: a flow has at most one split",
    ]


def test_a_waited_for_time_must_be_in_the_sample(tmp_path: Path) -> None:
    flow = GOOD.replace("  - wait: 1h", "  - wait: {until: event.data.starts_at, before: 2h}")
    assert _errors(tmp_path, flow) == [
        "cart.yaml:9: steps[0].wait.until: event.data.starts_at is not in the flow's sample"
    ]
    other = tmp_path / "other"
    other.mkdir()
    late = flow.replace("sample: {cart_id: c1}", "sample: {cart_id: c1, starts_at: tomorrow}")
    assert _errors(other, late) == [
        "cart.yaml:9: steps[0].wait.until: the sample's event.data.starts_at 'tomorrow' is not"
        " an ISO 8601 time"
    ]


def test_variant_templates_need_a_split_before_them(tmp_path: Path) -> None:
    flow = GOOD.replace("template: nudge", "template: {a: nudge, b: nudge}")
    assert _errors(tmp_path, flow) == [
        "cart.yaml:11: steps[1].send.template: a template per variant needs a split step"
    ]
    other = tmp_path / "other"
    other.mkdir()
    late = flow + "  - split: {name: s, variants: {a: 1, b: 1}}\n"
    assert _errors(other, late) == [
        "cart.yaml:11: steps[1].send.template: a template per variant comes after the split"
    ]


def test_odd_documents_get_plain_answers(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        {
            "a": "name: a\ntrigger: 5\nsteps: x\n",
            "b": "name: b\n",
            "c": "- a\n- b\n",
            "d": "name: d\ntrigger: {event: e}\nsteps:\n  - send: {template: 5, channels: [sms]}\n",
            "e": "",
        },
    )
    (folder / "f.yaml").write_bytes(b"\xff\xfe")
    assert [str(e) for e in check_flows(folder)] == [
        "a.yaml:2: trigger: value should be a valid dictionary",
        "a.yaml:3: steps: value should be a valid list",
        "b.yaml:1: trigger: this key is required",
        "b.yaml:1: steps: this key is required",
        "c.yaml:1: a flow file must be a mapping (name:, trigger:, steps:)",
        "d.yaml:4: steps[0].send.template: value should be a valid string or dictionary",
        "e.yaml:1: a flow file must be a mapping (name:, trigger:, steps:)",
        "f.yaml:1: not UTF-8 text (invalid start byte)",
    ]


def test_load_raises_every_problem_and_check_never_raises(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        {"cart": GOOD.replace("[email, telegram, sms]", "[fax]"), "other": "just text"},
    )
    errors = check_flows(folder)
    assert errors == [
        FlowError(
            "cart.yaml",
            12,
            "steps[1].send.channels[0]: 'fax' is not a channel (one of email, telegram, vk, sms)",
        ),
        FlowError("other.yaml", 1, "a flow file must be a mapping (name:, trigger:, steps:)"),
    ]
    with pytest.raises(FlowErrors) as info:
        load_flows(folder)
    assert info.value.errors == errors
    assert str(info.value).splitlines()[0].startswith("cart.yaml:12: steps[1].send.channels[0]")
    assert [str(e) for e in check_flows(tmp_path / "missing")] == [
        f"{tmp_path / 'missing'}:0: no such folder"
    ]


def test_version_covers_the_file_and_its_templates(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"cart": GOOD}, {"nudge": NUDGE, "unused": 'text: "x"'})
    first = load_flows(folder).flows["cart"]
    assert len(first.version) == 16
    assert first.source == GOOD
    assert load_flows(folder).flows["cart"].version == first.version  # stable
    (folder / "templates" / "unused.yaml").write_text('text: "y"', encoding="utf-8")
    assert load_flows(folder).flows["cart"].version == first.version  # not its template
    (folder / "templates" / "nudge.yaml").write_text(NUDGE + "vk: {text: hi}\n", encoding="utf-8")
    changed = load_flows(folder).flows["cart"].version
    assert changed != first.version
    (folder / "cart.yaml").write_text(GOOD.replace("1h", "2h"), encoding="utf-8")
    assert load_flows(folder).flows["cart"].version not in {first.version, changed}


def test_instruction_lines_point_into_the_file(tmp_path: Path) -> None:
    flow = load_flows(_folder(tmp_path, {"cart": GOOD})).flows["cart"]
    assert [(i.kind, i.line) for i in flow.program] == [("wait", 9), ("send", 10)]


def test_the_shipped_examples_copy_and_pass(tmp_path: Path) -> None:
    copy = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, copy)
    assert check_flows(copy) == []
    # Breaking one shipped template is caught with its line.
    cart = copy / "templates" / "cart_reminder.yaml"
    cart.write_text(
        cart.read_text(encoding="utf-8").replace("event.data.total", "event.data.totl", 1)
    )
    (error,) = check_flows(copy)
    assert error.path == "templates/cart_reminder.yaml"
    assert error.line == 2
    assert "totl" in error.message
