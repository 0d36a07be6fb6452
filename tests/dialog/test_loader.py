"""Scripts that do not validate are refused with the line that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.dialog import ScriptError, load_script, parse_script

GOOD = """\
start: hi
context:
  name: друг
nodes:
  hi:
    say: "Привет, {name}!"
    buttons:
      - {text: Доставка, goto: delivery}
      - [{text: Менеджер, action: handoff}, {text: Сайт, url: "https://example.ru"}]
  order:
    say: Номер заказа?
    ask: {slot: order, validate: number}
    goto: hi
faq:
  - id: delivery
    questions: [доставка, delivery]
    answer: "Заказ {order} привезём завтра"
    goto: hi
"""


def refused(text: str) -> ScriptError:
    with pytest.raises(ScriptError) as caught:
        parse_script(text, "bad.yaml")
    return caught.value


def test_the_good_script_loads() -> None:
    script = parse_script(GOOD, "good.yaml")
    assert set(script.all_nodes()) == {"hi", "order", "delivery"}


def test_bad_goto_in_a_button_names_its_line() -> None:
    error = refused(GOOD.replace("goto: delivery}", "goto: delivery_faq}"))
    assert str(error) == "bad.yaml:8: nodes.hi.buttons[0][0].goto: unknown node 'delivery_faq'"


def test_bad_goto_in_a_node_names_its_line() -> None:
    error = refused(GOOD.replace("    goto: hi\nfaq", "    goto: nowhere\nfaq"))
    assert str(error) == "bad.yaml:13: nodes.order.goto: unknown node 'nowhere'"


def test_wrong_type_names_its_line() -> None:
    error = refused(GOOD.replace('say: "Привет, {name}!"', "say: [1, 2]"))
    assert len(error.issues) == 1
    issue = error.issues[0]
    assert (issue.line, issue.path) == (6, "nodes.hi.say")
    assert "valid string" in issue.problem


def test_unknown_field_names_its_line() -> None:
    error = refused(GOOD.replace("    goto: hi\nfaq", "    got: hi\nfaq"))
    assert str(error).startswith("bad.yaml:13: nodes.order.got: Extra")


def test_missing_field_names_the_parent_line() -> None:
    error = refused(
        GOOD.replace("    ask: {slot: order, validate: number}", "    ask: {validate: number}")
    )
    assert str(error).startswith("bad.yaml:12: nodes.order.ask.slot: Field required")


def test_undefined_placeholder_names_its_line() -> None:
    error = refused(GOOD.replace("{name}!", "{nmae}!"))
    assert str(error) == "bad.yaml:6: nodes.hi.say: undefined placeholder {nmae}"


def test_placeholder_in_faq_answer_checked_too() -> None:
    error = refused(GOOD.replace("Заказ {order}", "Заказ {order.id}"))
    assert error.issues[0].line == 17
    assert "plain {name}" in error.issues[0].problem


def test_yaml_syntax_error_names_its_line() -> None:
    error = refused(
        GOOD.replace("    questions: [доставка, delivery]", "    questions: [доставка, delivery")
    )
    assert error.issues[0].line in (17, 18)
    assert "YAML syntax" in str(error)


def test_duplicate_key_is_refused() -> None:
    error = refused(GOOD.replace("  order:\n", "  hi:\n"))
    assert any(i.line == 10 and "duplicate key" in i.problem for i in error.issues)


def test_every_problem_is_reported_in_line_order() -> None:
    bad = GOOD.replace("{name}!", "{nmae}!").replace("goto: delivery}", "goto: x}")
    error = refused(bad)
    assert [i.line for i in error.issues] == [6, 8]


def test_bad_hours_and_zone() -> None:
    text = GOOD + (
        "hours:\n"
        "  timezone: Mars/Olympus\n"
        "  days:\n"
        '    mon-fri: "09:00-20:00"\n'
        '    sat: "16:00-10:00"\n'
        "    funday: closed\n"
    )
    error = refused(text)
    assert [(i.line, i.path) for i in error.issues] == [
        (20, "hours.timezone"),
        (23, "hours.days.sat"),
        (24, "hours.days.funday"),
    ]


def test_goto_loop_is_refused() -> None:
    error = refused("start: a\nnodes:\n  a: {say: x, goto: b}\n  b: {say: y, goto: a}\n")
    assert "goto loop" in str(error)
    assert error.issues[0].line == 3


def test_node_with_buttons_and_goto_is_refused() -> None:
    error = refused(GOOD.replace("  order:\n", "    goto: order\n  order:\n"))
    assert str(error) == (
        "bad.yaml:10: nodes.hi.goto: a node with buttons waits for a choice; drop goto"
    )


def test_button_needs_one_target() -> None:
    error = refused(GOOD.replace("{text: Доставка, goto: delivery}", "{text: Доставка}"))
    assert str(error) == (
        "bad.yaml:8: nodes.hi.buttons[0][0]: a button needs exactly one of goto, action, url"
    )


def test_empty_and_non_mapping_scripts() -> None:
    assert "empty" in str(refused(""))
    assert "mapping" in str(refused("- a\n- b\n"))


def test_load_script_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(GOOD.replace("goto: delivery}", "goto: delivery_faq}"), encoding="utf-8")
    with pytest.raises(ScriptError, match=r"^shop\.yaml:8: "):
        load_script(path)
