"""Where each value of a composed YAML document is, so errors can name its line.

Both the dialog scripts (`bots/dialog/loader.py`) and the flow files
(`flows/loader.py`) compose their YAML into nodes first and report every
problem — pydantic's and their own — against the line of the value it is
about. This holds the part they share: the path → line table, the duplicate
keys PyYAML would silently merge, and mapping a pydantic `loc` onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

__all__ = ["DuplicateKey", "Path_", "YamlLines", "dotted"]

Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    """`nodes.menu.buttons[1][0]`: a path as the author would write it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    """A key given twice in one mapping: the later one's path and line, the first's line."""

    path: Path_
    line: int
    first: int

    @property
    def message(self) -> str:
        return f"duplicate key (first at line {self.first})"


class YamlLines:
    """Where each value of one document is: path → 1-based line."""

    def __init__(self, root: yaml.Node) -> None:
        self.lines: dict[Path_, int] = {(): root.start_mark.line + 1}
        self.duplicate_keys: list[DuplicateKey] = []
        self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                name = str(key.value)
                line = key.start_mark.line + 1
                if name in seen:
                    self.duplicate_keys.append(DuplicateKey((*path, name), line, seen[name]))
                seen[name] = line
                self.lines[(*path, name)] = line
                self._walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                self._walk(item, (*path, index))

    def locate(self, loc: tuple[str | int, ...]) -> tuple[Path_, int]:
        """The deepest part of `loc` present in the document, and its line.

        Pydantic adds its own parts (union members, validator names); they are
        not in the document and are skipped.
        """
        found: Path_ = ()
        for part in loc:
            if (*found, part) in self.lines:
                found = (*found, part)
            elif (*found, str(part)) in self.lines:
                found = (*found, str(part))
        return found, self.lines[found]
