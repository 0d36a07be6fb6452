"""A flow's message templates: one YAML file per template, Jinja2 in a sandbox.

A template file holds a common `text` (and `buttons`) and optional per-channel
parts (`telegram`, `vk`, `sms`, `email`); a channel without its own part falls
back to the common one. Rendering uses an immutable sandboxed environment with
StrictUndefined: a template cannot reach Python internals or mutate the context,
and an undefined variable is an error, never an empty hole in a sent message.
HTML parts are autoescaped. An SMS over its `max_segments` is refused, never cut.
Every problem names the template file and the line in it.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.spec import describe_error, merge_alternatives
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


class TemplateProblem(ValueError):
    """A template is wrong: `file:line: part: message`."""

    def __init__(self, name: str, file: str, line: int, part: str, message: str) -> None:
        self.name, self.file, self.line, self.part, self.message = name, file, line, part, message
        where = f"{part}: " if part else ""
        super().__init__(f"{file}:{line}: {where}{message}")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A template rendered for one channel."""

    text: str
    html: str | None
    subject: str | None
    buttons: tuple[tuple[Button, ...], ...]


# ---------------------------------------------------------------- file shape


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ButtonSpec(_Part):
    text: str = Field(min_length=1)
    url: str | None = None
    payload: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ButtonSpec:
        if (self.url is None) == (self.payload is None):
            raise ValueError("a button needs exactly one of url, payload")
        return self


Rows = list[list[ButtonSpec]]


class TelegramPart(_Part):
    text: str | None = None
    html: str | None = None
    buttons: Rows | None = None


class VkPart(_Part):
    text: str | None = None
    buttons: Rows | None = None


class SmsPart(_Part):
    text: str | None = None
    max_segments: int | None = Field(default=None, ge=1, le=10)


class EmailPart(_Part):
    subject: str | None = None
    html: str | None = None
    text: str | None = None


class TemplateSpec(_Part):
    text: str | None = None
    buttons: Rows = Field(default_factory=list)
    telegram: TelegramPart | None = None
    vk: VkPart | None = None
    sms: SmsPart | None = None
    email: EmailPart | None = None


# ---------------------------------------------------------------- loading


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, where a data key wins over a dict method of the same name.

    Event data is JSON: `{{ event.data.items | length }}` means the cart's items,
    not `dict.items`. Keys of plain data are safe to return; everything else
    still goes through the sandbox's attribute checks.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


_TEXT_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False)
_HTML_ENV = _Sandbox(undefined=StrictUndefined, autoescape=True)


@dataclass(frozen=True, slots=True)
class _Source:
    """One templated string of the file and where its first line is."""

    path: str  # "telegram.html", "buttons[0][1].url"
    template: Template
    line: int  # file line of the template's line 1


def _first_lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    """File line of each scalar's first template line (block scalars start below the key)."""
    if path and not isinstance(node, yaml.ScalarNode):
        out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _first_lines(value, f"{path}.{key.value}" if path else str(key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _first_lines(item, f"{path}[{index}]", out)
    elif isinstance(node, yaml.ScalarNode):
        block = node.style in ("|", ">")
        out[path] = node.start_mark.line + 1 + (1 if block else 0)


def _loc_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Template:
    """One parsed template file: compiled strings by part path, plus problems found."""

    def __init__(self, name: str, path: Path, root: Path) -> None:
        self.name = name
        self.file = (
            str(path.relative_to(root.parent)) if path.is_relative_to(root.parent) else str(path)
        )
        self.raw = path.read_bytes()
        self.spec: TemplateSpec | None = None
        self.sources: dict[str, _Source] = {}
        self.problems: list[TemplateProblem] = []
        self._parse()

    def problem(self, line: int, part: str, message: str) -> TemplateProblem:
        return TemplateProblem(self.name, self.file, line, part, message)

    def _parse(self) -> None:
        text = self.raw.decode("utf-8", errors="replace")
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            self.problems.append(self.problem(line, "", f"YAML syntax: {exc.problem}"))
            return
        if root is None or not isinstance(data, dict):
            self.problems.append(self.problem(1, "", "a template file must be a mapping"))
            return
        lines: dict[str, int] = {}
        _first_lines(root, "", lines)
        try:
            self.spec = TemplateSpec.model_validate(data)
        except ValidationError as exc:
            found_at: dict[tuple[int, str], list[str]] = {}
            for item in exc.errors():
                part = _loc_path(item["loc"])
                known = next((p for p in _prefixes(part) if p in lines), "")
                line = lines.get(known, root.start_mark.line + 1)
                if item["type"] != "missing":
                    part = known or part
                message = describe_error(item)
                messages = found_at.setdefault((line, part), [])
                if message not in messages:
                    messages.append(message)
            for (line, part), messages in found_at.items():
                self.problems.append(self.problem(line, part, merge_alternatives(messages)))
            return
        for part, value in _strings(data):
            env = _HTML_ENV if part.endswith("html") else _TEXT_ENV
            line = lines.get(part, 1)
            try:
                compiled = env.from_string(value)
            except TemplateSyntaxError as exc:
                at = line + (exc.lineno or 1) - 1
                self.problems.append(self.problem(at, part, f"template syntax: {exc.message}"))
                continue
            self.sources[part] = _Source(part, compiled, line)

    def render(self, part: str, context: Mapping[str, Any]) -> str:
        source = self.sources[part]
        try:
            return source.template.render(context)
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            offset = _template_line(exc.__traceback__)
            message = str(exc)
            if type(exc).__name__ == "UndefinedError":
                message = f"undefined: {message}"
            elif type(exc).__name__ == "SecurityError":
                message = f"not allowed in a template: {message}"
            raise self.problem(source.line + offset - 1, part, message) from exc


def _prefixes(path: str) -> list[str]:
    """`a.b[0].c`, `a.b[0]`, `a.b`, `a`: the deepest known part first."""
    out = [path]
    while path:
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
        if path:
            out.append(path)
    return out


def _strings(data: Any, path: str = "") -> list[tuple[str, str]]:
    """Every templated string of a validated file with its part path."""
    if isinstance(data, dict):
        return [
            item
            for key, value in data.items()
            if key != "max_segments"
            for item in _strings(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(data, list):
        return [item for i, value in enumerate(data) for item in _strings(value, f"{path}[{i}]")]
    return [(path, data)] if isinstance(data, str) else []


def _template_line(tb: TracebackType | None) -> int:
    """The template line a rendering error happened on (Jinja rewrites the frames)."""
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class Templates:
    """Every template in a folder, parsed once; `render` picks a channel's variant."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._templates: dict[str, _Template] = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.yaml")):
                self._templates[path.stem] = _Template(path.stem, path, self.directory)

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
        template: _Template, rows: Rows, prefix: str, context: Mapping[str, Any]
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
    return _TEXT_ENV.from_string(source).render(context).strip()


def part_exists(spec: TemplateSpec, channel: str, key: str) -> bool:
    own = getattr(spec, channel, None)
    return own is not None and getattr(own, key, None) is not None
