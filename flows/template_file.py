"""One template file: its YAML shape, its strings compiled in the sandbox, its lines.

A template file holds a common `text` (and `buttons`) and optional per-channel
parts (`telegram`, `vk`, `sms`, `email`). Every string is compiled once by an
immutable sandboxed Jinja2 environment with StrictUndefined (HTML parts
autoescaped), and remembers the file line it starts on, so a problem found at
check time or at render time names `templates/<name>.yaml:<line>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.spec import describe_error, merge_alternatives

__all__ = ["HTML_ENV", "TEXT_ENV", "Rows", "TemplateFile", "TemplateProblem", "TemplateSpec"]


class TemplateProblem(ValueError):
    """A template is wrong: `file:line: part: message`."""

    def __init__(self, name: str, file: str, line: int, part: str, message: str) -> None:
        self.name, self.file, self.line, self.part, self.message = name, file, line, part, message
        where = f"{part}: " if part else ""
        super().__init__(f"{file}:{line}: {where}{message}")


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


TEXT_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False)
HTML_ENV = _Sandbox(undefined=StrictUndefined, autoescape=True)


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


class TemplateFile:
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
            env = HTML_ENV if part.endswith("html") else TEXT_ENV
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
