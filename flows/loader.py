"""Reading a folder of flow files, refusing each problem with its file and line.

The YAML is composed into nodes first so every value keeps its line
(`gateway/yaml_lines.py`, shared with `bots/dialog/loader.py`); pydantic
errors, segment expressions, cross-references and template renderings with a sample context are all
reported as `abandoned_cart.yaml:14: steps[2].send.channels[1]: 'fax' is not a
channel`, or `templates/cart.yaml:5: telegram.html: undefined: 'x' is undefined`.
`check_flows` lists every problem; `load_flows` raises them all at once.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateError
from pydantic import BaseModel, ValidationError

from flows import spec as specs
from flows.segments import SegmentError, parse_segment
from flows.spec import (
    Flow,
    FlowSpec,
    Send,
    StepSpec,
    compile_flow,
    describe_error,
    merge_alternatives,
)
from flows.templates import TemplateProblem, Templates, render_text
from gateway.yaml_lines import Path_, YamlLines, dotted

__all__ = ["FlowError", "FlowErrors", "FlowSet", "check_flows", "load_flows", "sample_context"]


@dataclass(frozen=True, slots=True)
class FlowError:
    """One problem: the file (relative to the flows folder), its line, what is wrong."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class FlowErrors(ValueError):
    """The flows folder does not validate; `errors` says each line that is wrong."""

    def __init__(self, errors: list[FlowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(error) for error in errors))


@dataclass
class FlowSet:
    """Every valid flow of a folder by name, with its templates."""

    flows: dict[str, Flow]
    templates: Templates
    directory: Path = field(default_factory=Path)

    def get(self, name: str) -> Flow | None:
        return self.flows.get(name)

    def by_event(self, type: str) -> list[Flow]:
        """Flows an event of `type` starts, by priority (highest first), then name."""
        return _ordered(f for f in self.flows.values() if f.trigger.event == type)

    def cancelled_by(self, type: str) -> list[Flow]:
        return _ordered(f for f in self.flows.values() if type in f.cancel_on)

    def scheduled(self) -> list[Flow]:
        return _ordered(f for f in self.flows.values() if f.trigger.schedule)

    def segment_entry(self) -> list[Flow]:
        return _ordered(
            f for f in self.flows.values() if f.trigger.segment and not f.trigger.schedule
        )


def _ordered(flows: Iterator[Flow] | Any) -> list[Flow]:
    return sorted(flows, key=lambda f: (-f.priority, f.name))


# ---------------------------------------------------------------- lines


class _Lines(YamlLines):
    """Where each value of one flow file is, and its duplicate keys as errors."""

    def __init__(self, root: yaml.Node, file: str) -> None:
        super().__init__(root)
        self.file = file
        self.errors: list[FlowError] = [
            self.error(key.path, key.message, key.line) for key in self.duplicate_keys
        ]

    def error(self, path: Path_, message: str, line: int | None = None) -> FlowError:
        if line is None:
            line = self.locate(path)[1]
        where = f"{dotted(path)}: " if path else ""
        return FlowError(self.file, line, f"{where}{message}")


def _vocabulary() -> list[str]:
    names: set[str] = set()
    for model in vars(specs).values():
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, info in model.model_fields.items():
                names.add(info.alias or name)
    return sorted(names)


def _shape_errors(error: ValidationError, lines: _Lines) -> list[FlowError]:
    """Pydantic's errors at their lines; alternatives of a union said once."""
    found_at: dict[tuple[int, Path_], list[str]] = {}
    for item in error.errors():
        loc = tuple(item["loc"])
        path, line = lines.locate(loc)
        message = describe_error(item)
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _vocabulary(), n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        elif item["type"] == "missing" and loc and loc[-1] not in path:
            path = (*path, loc[-1])
        messages = found_at.setdefault((line, path), [])
        if message not in messages:
            messages.append(message)
    return [
        lines.error(path, merge_alternatives(messages), line)
        for (line, path), messages in found_at.items()
    ]


# ---------------------------------------------------------------- checks


def sample_context(spec: FlowSpec, *, step: str = "", variant: str | None = None) -> dict[str, Any]:
    """The context `chatgate flows check` renders templates with.

    Customer fields every customer has, the trigger event with the flow's own
    `sample:` mapping as `event.data`, and no links (templates guard them with
    `is defined`). Attributes are per customer, so templates read them with `.get`.
    """
    return {
        "customer": {
            "id": 1,
            "name": "Sample Customer",
            "phone": "+79990000000",
            "email": "sample@example.com",
            "attributes": {},
            "tags": [],
            "timezone": "Europe/Moscow",
            "locale": "ru",
        },
        "event": {
            "type": spec.trigger.event or ("schedule" if spec.trigger.schedule else "segment"),
            "data": dict(spec.sample),
            "occurred_at": datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
        },
        "flow": {"name": spec.name, "step": step},
        "variant": variant,
        "links": {},
    }


def _steps(steps: list[StepSpec], base: Path_) -> Iterator[tuple[StepSpec, Path_]]:
    for index, step in enumerate(steps):
        here = (*base, index)
        yield step, here
        if step.if_ is not None:
            yield from _steps(step.if_.then, (*here, "if", "then"))
            yield from _steps(step.if_.else_, (*here, "if", "else"))


class _FlowCheck:
    """The checks a valid shape still needs: names, segments, splits, templates."""

    def __init__(self, spec: FlowSpec, flow: Flow, lines: _Lines, templates: Templates) -> None:
        self.spec, self.flow, self.lines, self.templates = spec, flow, lines, templates
        self.errors: list[FlowError] = []
        self.template_errors: list[FlowError] = []

    def run(self, stem: str) -> None:
        spec, lines = self.spec, self.lines
        if spec.name != stem:
            self.errors.append(
                lines.error(("name",), f"{spec.name!r} must match the file name {stem!r}")
            )
        if spec.trigger.segment is not None:
            self._segment(spec.trigger.segment, ("trigger", "segment"))
        if spec.key is not None:
            self._key(spec.key)
        splits = [(s, p) for s, p in _steps(spec.steps, ("steps",)) if s.split is not None]
        for _, path in splits[1:]:
            self.errors.append(lines.error((*path, "split"), "a flow has at most one split"))
        variants = list(splits[0][0].split.variants) if splits and splits[0][0].split else []
        names: dict[str, int] = {}
        for step, path in _steps(spec.steps, ("steps",)):
            if step.if_ is not None:
                self._segment(step.if_.when, (*path, "if", "when"))
            if step.wait is not None and step.wait.until is not None:
                self._until(step.wait.until, (*path, "wait", "until"))
            name = step.send.name if step.send else (step.split.name if step.split else None)
            if name is not None:
                line = lines.locate(path)[1]
                if name in names:
                    self.errors.append(
                        lines.error(
                            path, f"step name {name!r} is already used at line {names[name]}"
                        )
                    )
                names.setdefault(name, line)
        split_at = next((pc for pc, i in enumerate(self.flow.program) if i.kind == "split"), None)
        sends = [(pc, i) for pc, i in enumerate(self.flow.program) if isinstance(i, Send)]
        for (pc, instruction), (step, path) in zip(
            sends,
            [(s, p) for s, p in _steps(spec.steps, ("steps",)) if s.send],
            strict=True,
        ):
            self._send(instruction, step, path, variants)
            if isinstance(instruction.template, dict) and split_at is not None and pc < split_at:
                self.errors.append(
                    lines.error(
                        (*path, "send", "template"), "a template per variant comes after the split"
                    )
                )

    def _segment(self, text: str, path: Path_) -> None:
        try:
            parse_segment(text)
        except SegmentError as exc:
            self.errors.append(self.lines.error(path, f"segment: {exc}"))

    def _until(self, dotted: str, path: Path_) -> None:
        """With a `sample:`, a waited-for `event.data` time must be in it and be a time."""
        parts = dotted.split(".")
        if not self.spec.sample or parts[:2] != ["event", "data"]:
            return
        value: Any = self.spec.sample
        for part in parts[2:]:
            if not isinstance(value, dict) or part not in value:
                self.errors.append(self.lines.error(path, f"{dotted} is not in the flow's sample"))
                return
            value = value[part]
        try:
            datetime.fromisoformat(str(value))
        except ValueError:
            self.errors.append(
                self.lines.error(path, f"the sample's {dotted} {value!r} is not an ISO 8601 time")
            )

    def _key(self, text: str) -> None:
        try:
            key = render_text(text, sample_context(self.spec))
        except TemplateError as exc:
            self.errors.append(self.lines.error(("key",), f"key template: {exc}"))
            return
        if not key:
            self.errors.append(self.lines.error(("key",), "the key renders empty for the sample"))

    def _send(self, send: Send, step: StepSpec, path: Path_, variants: list[str]) -> None:
        assert step.send is not None
        where = (*path, "send", "template")
        if isinstance(step.send.template, dict):
            if not variants:
                self.errors.append(
                    self.lines.error(where, "a template per variant needs a split step")
                )
            missing = [v for v in variants if v not in step.send.template]
            extra = [v for v in step.send.template if v not in variants]
            if variants and (missing or extra):
                self.errors.append(
                    self.lines.error(
                        where, f"give one template per variant of the split: {', '.join(variants)}"
                    )
                )
        for name in send.templates():
            if name not in self.templates:
                self.errors.append(
                    self.lines.error(
                        where, f"no template {name!r} (looked for templates/{name}.yaml)"
                    )
                )
                continue
            tried: list[str | None] = [*variants] if variants else [None]
            for variant in tried:
                if isinstance(send.template, dict) and send.template.get(variant or "") != name:
                    continue
                context = sample_context(self.spec, step=send.name, variant=variant)
                for problem in self.templates.problems(name, context, send.channels):
                    self.template_errors.append(_template_error(problem, self.lines.file, path))


def _template_error(problem: TemplateProblem, flow_file: str, path: Path_) -> FlowError:
    part = f"{problem.part}: " if problem.part else ""
    return FlowError(
        problem.file, problem.line, f"{part}{problem.message} (used by {flow_file} {dotted(path)})"
    )


def _version(raw: bytes, flow: Flow, templates: Templates) -> str:
    digest = hashlib.sha256(raw)
    for name in sorted({n for send in flow.sends() for n in send.templates()}):
        if name in templates:
            digest.update(b"\0" + name.encode() + b"\0" + templates.raw(name))
    return digest.hexdigest()[:16]


def _load_one(
    path: Path, directory: Path, templates: Templates
) -> tuple[Flow | None, list[FlowError]]:
    file = path.name
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [FlowError(file, 1, f"not UTF-8 text ({exc.reason})")]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return None, [FlowError(file, line, f"YAML syntax: {exc.problem or exc.context}")]
    if root is None or not isinstance(data, dict):
        return None, [FlowError(file, 1, "a flow file must be a mapping (name:, trigger:, steps:)")]
    lines = _Lines(root, file)
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as exc:
        return None, sorted(lines.errors + _shape_errors(exc, lines), key=lambda e: e.line)
    flow = compile_flow(spec, version="", source=text, path=str(path), lines=lines.lines)
    check = _FlowCheck(spec, flow, lines, templates)
    check.run(path.stem)
    own = sorted(lines.errors + check.errors, key=lambda e: e.line)
    errors = own + sorted(check.template_errors, key=lambda e: (e.path, e.line))
    if errors:
        return None, errors
    flow = compile_flow(
        spec, version=_version(raw, flow, templates), source=text, path=str(path), lines=lines.lines
    )
    return flow, []


def _load(directory: str | Path) -> tuple[FlowSet, list[FlowError]]:
    folder = Path(directory)
    templates = Templates(folder / "templates")
    if not folder.is_dir():
        return FlowSet({}, templates, folder), [FlowError(str(folder), 0, "no such folder")]
    flows: dict[str, Flow] = {}
    errors: list[FlowError] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        flow, problems = _load_one(path, folder, templates)
        for problem in problems:
            if problem not in errors:
                errors.append(problem)
        if flow is not None:
            flows[flow.name] = flow
    return FlowSet(flows, templates, folder), errors


def check_flows(directory: str | Path) -> list[FlowError]:
    """Every problem in the folder's flows and the templates they use; never raises for them."""
    return _load(directory)[1]


def load_flows(directory: str | Path) -> FlowSet:
    """The folder's flows, or FlowErrors with every problem if any file is wrong."""
    flows, errors = _load(directory)
    if errors:
        raise FlowErrors(errors)
    return flows
