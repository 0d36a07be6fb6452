"""Templates: the sandbox holds, channel variants fall back, SMS limits refuse, lines are right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.templates import TemplateProblem, Templates, render_text
from gateway.channels import Button


def _templates(tmp_path: Path, **files: str) -> Templates:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return Templates(folder)


def _context(**data: Any) -> dict[str, Any]:
    return {
        "customer": {"name": "Anna <b>&", "tags": ["vip"], "attributes": {"city": "Kazan"}},
        "event": {
            "type": "cart_abandoned",
            "data": {"cart_id": "c1", "url": "https://s/c1", **data},
        },
        "flow": {"name": "abandoned_cart", "step": "nudge"},
        "variant": "a",
        "links": {},
    }


FULL = """\
text: "Hi {{ customer.name }}, cart {{ event.data.cart_id }}"
buttons: [[{text: "Open {{ event.data.cart_id }}", url: "{{ event.data.url }}"}]]
telegram:
  html: "<b>Hi {{ customer.name }}</b>"
vk:
  buttons: [[{text: "Later", payload: "later"}]]
email:
  subject: "  Your
    cart  "
  html: "<p>{{ customer.name }}</p>"
"""


def test_each_channel_gets_its_variant_or_the_common_part(tmp_path: Path) -> None:
    templates = _templates(tmp_path, cart=FULL)
    telegram = templates.render("cart", "telegram", _context())
    assert telegram.html == "<b>Hi Anna &lt;b&gt;&amp;</b>"  # HTML parts are escaped
    assert telegram.text == "Hi Anna <b>&, cart c1"  # plain text is not
    assert telegram.buttons == ((Button("Open c1", url="https://s/c1"),),)
    vk = templates.render("cart", "vk", _context())
    assert vk.text == "Hi Anna <b>&, cart c1"
    assert vk.html is None
    assert vk.buttons == ((Button("Later", payload="later"),),)  # its own buttons win
    sms = templates.render("cart", "sms", _context())
    assert (sms.text, sms.html, sms.buttons) == ("Hi Anna <b>&, cart c1", None, ())
    email = templates.render("cart", "email", _context())
    assert email.subject == "Your cart"
    assert email.html == "<p>Anna &lt;b&gt;&amp;</p>"
    assert email.text == "Hi Anna <b>&, cart c1"


def test_html_only_telegram_gets_a_plain_text_from_its_html(tmp_path: Path) -> None:
    templates = _templates(tmp_path, t='telegram: {html: "<b>Sale</b> &amp; more"}')
    assert templates.render("t", "telegram", _context()).text == "Sale & more"
    with pytest.raises(TemplateProblem, match="nothing to send on vk"):
        templates.render("t", "vk", _context())


def test_email_without_a_subject_is_refused(tmp_path: Path) -> None:
    templates = _templates(tmp_path, t='text: "hello"')
    with pytest.raises(TemplateProblem, match=r"email\.subject"):
        templates.render("t", "email", _context())


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ customer.__class__.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ event.data.update({'cart_id': 'x'}) }}",
        "{{ customer.tags.append('hacked') }}",
        "{% for x in range(10**9) %}{% endfor %}",
        "{{ config }}",
        "{{ request.environ }}",
    ],
)
def test_sandbox_escapes_are_refused(tmp_path: Path, payload: str) -> None:
    templates = _templates(tmp_path, evil=f'text: "ok"\nsms: {{text: "{payload}"}}\n')
    context = _context()
    with pytest.raises(TemplateProblem) as info:
        templates.render("evil", "sms", context)
    assert info.value.file == "templates/evil.yaml"
    assert info.value.line == 2
    assert info.value.part == "sms.text"
    assert context["customer"]["tags"] == ["vip"]  # nothing was mutated
    assert context["event"]["data"]["cart_id"] == "c1"


def test_an_undefined_variable_is_an_error_with_its_line(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path,
        t="""\
text: "fine"
telegram:
  html: |
    <b>line one</b>
    line two {{ customer.name }}
    line three {{ event.data.coupon }}
""",
    )
    with pytest.raises(TemplateProblem) as info:
        templates.render("t", "telegram", _context())
    assert info.value.line == 6
    assert "coupon" in info.value.message
    assert str(info.value).startswith("templates/t.yaml:6: telegram.html: undefined")
    # The same template renders once the value is there: no empty holes either way.
    assert "line three SAVE" in (
        templates.render("t", "telegram", _context(coupon="SAVE")).html or ""
    )


def test_sms_over_its_segment_limit_is_refused_not_cut(tmp_path: Path) -> None:
    templates = _templates(tmp_path, t='text: "{{ event.data.note }}"\nsms: {max_segments: 1}\n')
    fits = "я" * 70  # Cyrillic is UCS-2: 70 characters in one part
    assert templates.render("t", "sms", _context(note=fits)).text == fits
    with pytest.raises(TemplateProblem, match="needs 2 ucs2 SMS parts, more than 1") as info:
        templates.render("t", "sms", _context(note=fits + "я"))
    assert (info.value.line, info.value.part) == (1, "text")
    # Another channel of the same template is not limited.
    assert templates.render("t", "telegram", _context(note="я" * 500)).text == "я" * 500


def test_telegram_html_keeps_to_the_tags_telegram_shows(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path,
        ok="telegram: {html: \"<b>a</b> <i>b</i> <a href='https://x'>c</a>"
        ' <tg-spoiler>d</tg-spoiler>"}',
        bad='telegram:\n  html: "<b>Sale</b><p>{{ customer.name }}</p>"\n',
    )
    assert templates.render("ok", "telegram", _context()).text == "a b c d"
    with pytest.raises(TemplateProblem) as info:
        templates.render("bad", "telegram", _context())
    assert str(info.value).startswith("templates/bad.yaml:2: telegram.html: <p> is not a tag")


def test_button_payloads_fit_telegram(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path, t='text: "x"\nbuttons: [[{text: "Go", payload: "{{ event.data.p }}"}]]\n'
    )
    assert templates.render("t", "vk", _context(p="yes")).buttons[0][0].payload == "yes"
    with pytest.raises(TemplateProblem, match="1-64 bytes, this one 65"):
        templates.render("t", "vk", _context(p="x" * 65))


def test_link_buttons_must_be_web_links(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path, t='text: "x"\nbuttons: [[{text: "Go", url: "{{ event.data.url }}"}]]\n'
    )
    with pytest.raises(TemplateProblem, match="is not an http"):
        templates.render("t", "telegram", _context(url="javascript:alert(1)"))


def test_file_problems_name_their_line(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path,
        keys='text: "x"\ntelegram:\n  htm: "<b>x</b>"\n',
        syntax='text: "x"\nvk:\n  text: "{{ customer.name "\n',
        shape='text: "x"\nsms: {max_segments: 0}\n',
        button='text: "x"\nbuttons: [[{text: "Go"}]]\n',
    )
    assert [str(p) for p in templates.load_problems("keys")] == [
        "templates/keys.yaml:3: telegram.htm: unknown key 'htm'"
    ]
    (syntax,) = templates.load_problems("syntax")
    assert syntax.line == 3
    assert "template syntax" in syntax.message
    (shape,) = templates.load_problems("shape")
    assert (shape.line, shape.part) == (2, "sms.max_segments")
    (button,) = templates.load_problems("button")
    assert button.line == 2
    assert "exactly one of url, payload" in button.message


def test_check_reports_every_part_with_a_sample(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path,
        t='text: "{{ event.data.cart_id }}"\nvk: {text: "{{ event.data.missing }}"}\n',
    )
    assert templates.check("t", _context()) == [
        "templates/t.yaml:2: vk.text: undefined: 'dict object' has no attribute 'missing'"
    ]
    assert templates.check("nope", _context()) == ["templates/nope.yaml:1: no such template"]


def test_data_keys_win_over_dict_methods(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path,
        t='text: "{{ event.data.items | length }} {{ event.data.keys }} {{ event.data.get }}"',
    )
    rendered = templates.render("t", "sms", _context(items=[1, 2, 3], keys="k", get="g"))
    assert rendered.text == "3 k g"
    with pytest.raises(TemplateProblem, match="has no len"):
        templates.render("t", "sms", _context(keys="k", get="g"))  # no items: still refused


def test_render_text_for_trigger_keys() -> None:
    assert render_text(" {{ event.data.cart_id }} ", _context()) == "c1"
    with pytest.raises(Exception, match="unsafe"):
        render_text("{{ ''.__class__ }}", _context())
