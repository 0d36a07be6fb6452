"""A flow's message templates: one YAML file per template, Jinja2 in a sandbox.

A channel without its own part in the file (`flows/template_file.py`) falls back
to the common `text` and `buttons`. Rendering uses an immutable sandboxed
environment with StrictUndefined: a template cannot reach Python internals or
mutate the context, and an undefined variable is an error, never an empty hole in
a sent message. HTML parts are autoescaped; Telegram HTML keeps to the tags
Telegram shows. An SMS over its `max_segments` is refused, never cut. Every
problem names the template file and the line in it.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from flows.template_file import TEXT_ENV, Rows, TemplateFile, TemplateProblem, TemplateSpec
from gateway.bridge.sms.segments import TooManySegments, check_segments
from gateway.channels import Button

__all__ = ["Rendered", "TemplateProblem", "Templates", "render_text"]

CHANNEL_PARTS: dict[str, tuple[str, ...]] = {
    "telegram": ("text", "html", "buttons"),
    "vk": ("text", "buttons"),
    "sms": ("text",),
    "email": ("subject", "html", "text"),
}
_TAG = re.compile(r"<[^>]*>")
# What Telegram's parse_mode=HTML accepts; anything else fails the whole message.
TELEGRAM_TAGS = (
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
    "blockquote", "tg-spoiler", "span", "tg-emoji",
)  # fmt: skip
MAX_CALLBACK_BYTES = 64  # Telegram's callback_data limit


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def _telegram_tags(html: str) -> str | None:
    """The first tag of `html` Telegram would refuse, if any."""
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return next((tag for tag in parser.tags if tag not in TELEGRAM_TAGS), None)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A template rendered for one channel."""

    text: str
    html: str | None
    subject: str | None
    buttons: tuple[tuple[Button, ...], ...]


class Templates:
    """Every template in a folder, parsed once; `render` picks a channel's variant."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._templates: dict[str, TemplateFile] = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.yaml")):
                self._templates[path.stem] = TemplateFile(path.stem, path, self.directory)

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def names(self) -> list[str]:
        return sorted(self._templates)

    def raw(self, name: str) -> bytes:
        """The file's bytes (a flow's version hash covers its templates)."""
        return self._templates[name].raw

    def file(self, name: str) -> str:
        return self._templates[name].file

    def load_problems(self, name: str) -> list[TemplateProblem]:
        """What is wrong with the file itself (YAML, keys, Jinja syntax)."""
        return list(self._templates[name].problems)

    def render(self, name: str, channel: str, context: Mapping[str, Any]) -> Rendered:
        """`name` rendered for `channel`; TemplateProblem on anything wrong, nothing cut."""
        template = self._templates.get(name)
        if template is None:
            raise TemplateProblem(name, f"templates/{name}.yaml", 1, "", "no such template")
        if template.problems:
            raise template.problems[0]
        spec = template.spec
        assert spec is not None
        own = getattr(spec, channel, None) if channel in CHANNEL_PARTS else None
        if channel not in CHANNEL_PARTS:
            raise template.problem(1, "", f"{channel!r} is not a channel")

        def part(key: str) -> str | None:
            if own is not None and getattr(own, key, None) is not None:
                return template.render(f"{channel}.{key}", context)
            return None

        text = part("text")
        html = part("html") if "html" in CHANNEL_PARTS[channel] else None
        if channel == "telegram" and html is not None:
            wrong = _telegram_tags(html)
            if wrong:
                line = template.sources["telegram.html"].line
                raise template.problem(
                    line,
                    "telegram.html",
                    f"<{wrong}> is not a tag Telegram shows (use {', '.join(TELEGRAM_TAGS)};"
                    " new lines for paragraphs)",
                )
        if text is None and spec.text is not None:
            text = template.render("text", context)
        if text is None and html is not None:
            text = html_lib.unescape(_TAG.sub("", html))
        if text is None:
            raise template.problem(
                1, channel, f"nothing to send on {channel}: give `text` or `{channel}.text`"
            )
        subject = None
        if channel == "email":
            subject = part("subject")
            if subject is None:
                raise template.problem(1, "email", "an email needs `email.subject`")
            subject = " ".join(subject.split())
        buttons: tuple[tuple[Button, ...], ...] = ()
        if "buttons" in CHANNEL_PARTS[channel]:
            rows = own.buttons if own is not None and own.buttons is not None else None
            prefix = f"{channel}.buttons" if rows is not None else "buttons"
            buttons = self._buttons(
                template, rows if rows is not None else spec.buttons, prefix, context
            )
        if channel == "sms":
            limit = spec.sms.max_segments if spec.sms is not None else None
            if limit is not None:
                try:
                    check_segments(text, limit)
                except TooManySegments as exc:
                    where = "sms.text" if part_exists(spec, "sms", "text") else "text"
                    line = template.sources[where].line
                    raise template.problem(line, where, str(exc)) from exc
        return Rendered(text=text, html=html, subject=subject, buttons=buttons)

    @staticmethod
    def _buttons(
        template: TemplateFile, rows: Rows, prefix: str, context: Mapping[str, Any]
    ) -> tuple[tuple[Button, ...], ...]:
        out: list[tuple[Button, ...]] = []
        for r, row in enumerate(rows):
            made = []
            for c, spec in enumerate(row):
                base = f"{prefix}[{r}][{c}]"
                label = template.render(f"{base}.text", context)
                if spec.url is not None:
                    url = template.render(f"{base}.url", context).strip()
                    if not url.startswith(("https://", "http://")):
                        line = template.sources[f"{base}.url"].line
                        raise template.problem(
                            line, f"{base}.url", f"{url!r} is not an http(s) link"
                        )
                    made.append(Button(label, url=url))
                else:
                    payload = template.render(f"{base}.payload", context)
                    if not 1 <= len(payload.encode()) <= MAX_CALLBACK_BYTES:
                        line = template.sources[f"{base}.payload"].line
                        raise template.problem(
                            line,
                            f"{base}.payload",
                            f"a button payload is 1-{MAX_CALLBACK_BYTES} bytes,"
                            f" this one {len(payload.encode())}",
                        )
                    made.append(Button(label, payload=payload))
            out.append(tuple(made))
        return tuple(out)

    def problems(
        self, name: str, context: Mapping[str, Any], channels: Iterable[str] | None = None
    ) -> list[TemplateProblem]:
        """Everything wrong with rendering `name` on `channels` with a sample context.

        Without `channels`: every channel the file can serve (email only when it
        has an `email` part, since an email needs a subject).
        """
        template = self._templates.get(name)
        if template is None:
            return [TemplateProblem(name, f"templates/{name}.yaml", 1, "", "no such template")]
        if template.problems:
            return list(template.problems)
        if channels is None:
            assert template.spec is not None
            has_email = template.spec.email is not None
            channels = [c for c in CHANNEL_PARTS if c != "email" or has_email]
        found: list[TemplateProblem] = []
        for channel in channels:
            try:
                self.render(name, channel, context)
            except TemplateProblem as problem:
                if str(problem) not in {str(p) for p in found}:
                    found.append(problem)
        # Parts no channel asked for are still rendered, so a typo there is found too.
        for part in template.sources:
            try:
                template.render(part, context)
            except TemplateProblem as problem:
                if str(problem) not in {str(p) for p in found}:
                    found.append(problem)
        return found

    def check(
        self, name: str, sample_context: Mapping[str, Any], channels: Iterable[str] | None = None
    ) -> list[str]:
        """`problems` as `file:line: part: message` lines, for `chatgate flows check`."""
        return [str(problem) for problem in self.problems(name, sample_context, channels)]


def render_text(source: str, context: Mapping[str, Any]) -> str:
    """A one-line template outside a file (a flow's trigger `key`), in the same sandbox.

    Raises jinja2.TemplateError (UndefinedError, SecurityError, syntax) on anything wrong.
    """
    return TEXT_ENV.from_string(source).render(context).strip()


def part_exists(spec: TemplateSpec, channel: str, key: str) -> bool:
    own = getattr(spec, channel, None)
    return own is not None and getattr(own, key, None) is not None
