"""Reading a dialog script from YAML, refusing it with the line that is wrong.

The YAML is composed into nodes first so every value keeps its line; pydantic
errors and our own cross-reference checks are both reported against it:
`shop.yaml:42: nodes.menu.buttons[1][0].goto: unknown node 'delivery_faq'`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import ValidationError

from bots.dialog.hours import parse_days, parse_ranges
from bots.dialog.script import TERMINAL_ACTIONS, ButtonSpec, NodeSpec, Script
from bots.dialog.templates import placeholders
from gateway.yaml_lines import Path_, YamlLines, dotted

__all__ = ["ScriptError", "ScriptIssue", "load_script", "parse_script"]

BUILT_IN_PLACEHOLDERS = frozenset({"hours", "next_open"})


@dataclass(frozen=True, slots=True)
class ScriptIssue:
    """One thing wrong with a script, and where."""

    source: str
    line: int
    path: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}:{self.line}: {where}{self.problem}"


class ScriptError(ValueError):
    """The script does not validate; `issues` says each line that is wrong."""

    def __init__(self, issues: list[ScriptIssue]) -> None:
        self.issues = tuple(sorted(issues, key=lambda issue: issue.line))
        super().__init__("\n".join(str(issue) for issue in self.issues))


class _Lines(YamlLines):
    """Where each value of the script is, and its duplicate keys as issues."""

    def __init__(self, root: yaml.Node, source: str) -> None:
        super().__init__(root)
        self.source = source
        self.duplicates: list[ScriptIssue] = [
            self.issue(key.path, key.message, key.line) for key in self.duplicate_keys
        ]

    def issue(self, path: Path_, problem: str, line: int | None = None) -> ScriptIssue:
        if line is None:
            line = self.locate(path)[1]
        return ScriptIssue(self.source, line, dotted(path), problem)


def _shape_issues(error: ValidationError, lines: _Lines) -> list[ScriptIssue]:
    issues = []
    for item in error.errors():
        loc = tuple(item["loc"])
        found, line = lines.locate(loc)
        path = found
        if item["type"] == "missing" and loc and loc[-1] not in found:
            path = (*found, loc[-1])
        issues.append(lines.issue(path, item["msg"].replace("Input", "value"), line))
    return issues


def _buttons(
    rows: tuple[tuple[ButtonSpec, ...], ...], path: Path_
) -> Iterator[tuple[ButtonSpec, Path_]]:
    for r, row in enumerate(rows):
        for c, button in enumerate(row):
            yield button, (*path, "buttons", r, c)


def _reference_issues(script: Script, lines: _Lines) -> list[ScriptIssue]:
    issues: list[ScriptIssue] = []
    nodes = script.all_nodes()

    def need(name: str | None, path: Path_) -> None:
        if name is not None and name not in nodes:
            issues.append(lines.issue(path, f"unknown node {name!r}"))

    def text(template: str | None, path: Path_, allowed: frozenset[str]) -> None:
        if template is None:
            return
        try:
            used = placeholders(template)
        except ValueError as exc:
            issues.append(lines.issue(path, str(exc)))
            return
        issues.extend(
            lines.issue(path, f"undefined placeholder {{{name}}}")
            for name in used
            if name not in allowed
        )

    slots = {node.ask.slot for node in script.nodes.values() if node.ask}
    allowed = frozenset(script.context) | BUILT_IN_PLACEHOLDERS | slots

    need(script.start, ("start",))
    need(script.menu, ("menu",))
    need(script.fallback.node, ("fallback", "node"))
    need(script.fallback.then, ("fallback", "then"))
    for index, entry in enumerate(script.faq):
        if entry.id in script.nodes:
            first = lines.lines.get(("nodes", entry.id), 0)
            issues.append(
                lines.issue(("faq", index, "id"), f"{entry.id!r} is already a node (line {first})")
            )
        need(entry.goto, ("faq", index, "goto"))
        text(entry.answer, ("faq", index, "answer"), allowed)
        for button, where in _buttons(entry.buttons, ("faq", index)):
            issues.extend(_button_issues(button, where, lines, nodes))
    for name, node in script.nodes.items():
        issues.extend(_node_issues(name, node, lines))
        base: Path_ = ("nodes", name)
        need(node.goto, (*base, "goto"))
        for field in ("say", "say_typed"):
            text(getattr(node, field), (*base, field), allowed)
        if node.ask:
            text(node.ask.retry, (*base, "ask", "retry"), allowed)
        if node.action:
            for key, value in node.action.data.items():
                if isinstance(value, str):
                    text(value, (*base, "action", "data", key), allowed)
        for button, where in _buttons(node.buttons, base):
            issues.extend(_button_issues(button, where, lines, nodes))
    text(script.handoff.open, ("handoff", "open"), allowed)
    text(script.handoff.closed, ("handoff", "closed"), allowed)
    issues.extend(_hours_issues(script, lines))
    issues.extend(_loop_issues(script, lines))
    return issues


def _button_issues(
    button: ButtonSpec, path: Path_, lines: _Lines, nodes: dict[str, NodeSpec]
) -> list[ScriptIssue]:
    targets = [f for f in ("goto", "action", "url") if getattr(button, f) is not None]
    if len(targets) != 1:
        return [lines.issue(path, "a button needs exactly one of goto, action, url")]
    if button.goto is not None and button.goto not in nodes:
        return [lines.issue((*path, "goto"), f"unknown node {button.goto!r}")]
    return []


def _node_issues(name: str, node: NodeSpec, lines: _Lines) -> list[ScriptIssue]:
    base: Path_ = ("nodes", name)
    issues = []
    if not (node.say or node.ask or node.action or node.goto or node.buttons):
        issues.append(lines.issue(base, "empty node: give it say, buttons, ask, action or goto"))
    if node.buttons and not node.say:
        issues.append(lines.issue((*base, "buttons"), "buttons need a `say` text to go with"))
    if node.buttons and node.goto and not node.ask:
        issues.append(
            lines.issue((*base, "goto"), "a node with buttons waits for a choice; drop goto")
        )
    if node.action and node.action.kind in TERMINAL_ACTIONS and node.goto:
        issues.append(
            lines.issue((*base, "goto"), f"never reached: {node.action.kind!r} ends the dialog")
        )
    if node.say_typed and not (node.ask and node.ask.contact_button):
        issues.append(lines.issue((*base, "say_typed"), "say_typed needs ask.contact_button"))
    return issues


def _hours_issues(script: Script, lines: _Lines) -> list[ScriptIssue]:
    if script.hours is None:
        return []
    issues = []
    try:
        ZoneInfo(script.hours.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        issues.append(
            lines.issue(("hours", "timezone"), f"unknown time zone {script.hours.timezone!r}")
        )
    seen: dict[int, str] = {}
    for key, value in script.hours.days.items():
        path: Path_ = ("hours", "days", key)
        try:
            parse_ranges(value)
            days = parse_days(key)
        except ValueError as exc:
            issues.append(lines.issue(path, str(exc)))
            continue
        for day in days:
            if day in seen:
                issues.append(lines.issue(path, f"this day is already given by {seen[day]!r}"))
                break
            seen[day] = key
    return issues


def _loop_issues(script: Script, lines: _Lines) -> list[ScriptIssue]:
    """A chain of gotos that never waits for the customer would never end."""
    nodes = script.all_nodes()
    issues = []
    for name in script.nodes:
        seen: list[str] = []
        current: str | None = name
        while current is not None and current in nodes:
            node = nodes[current]
            if node.buttons or node.ask or (node.action and node.action.kind in TERMINAL_ACTIONS):
                break
            if current in seen:
                if current == name:
                    chain = " → ".join([*seen, current])
                    issues.append(lines.issue(("nodes", name, "goto"), f"goto loop: {chain}"))
                break
            seen.append(current)
            current = node.goto
    return issues


def parse_script(text: str, name: str = "<script>") -> Script:
    """A validated script from YAML text; ScriptError names each wrong line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "not valid YAML"
        raise ScriptError([ScriptIssue(name, line, "", f"YAML syntax: {problem}")]) from exc
    if root is None:
        raise ScriptError([ScriptIssue(name, 1, "", "the script is empty")])
    lines = _Lines(root, name)
    try:
        data = yaml.SafeLoader("").construct_document(root)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ScriptError([ScriptIssue(name, line, "", f"YAML: {exc.problem}")]) from exc
    if not isinstance(data, dict):
        raise ScriptError([ScriptIssue(name, 1, "", "the script must be a mapping")])
    try:
        script = Script.model_validate(data)
    except ValidationError as exc:
        raise ScriptError(lines.duplicates + _shape_issues(exc, lines)) from exc
    issues = lines.duplicates + _reference_issues(script, lines)
    if issues:
        raise ScriptError(issues)
    return script


def load_script(path: str | Path) -> Script:
    """Read and validate a script file; errors are `file.yaml:LINE: where: what`."""
    path = Path(path)
    return parse_script(path.read_text(encoding="utf-8"), path.name)
