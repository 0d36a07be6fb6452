"""The segment language's syntax: tokens, the tree, a recursive-descent parser.

    tag = 'vip' and consent.marketing.email and channel = 'telegram'
    and event.purchase within 60d = 0 and attributes.city = 'Москва' and not tag = 'test'

A real tokenizer and a recursive-descent parser turn the text into a small tree
of frozen nodes, refusing mistakes with their position; `flows/segments.py`
compiles the tree to SQL. Names are checked here against fixed lists or an
identifier pattern, so nothing but values reaches the compiler.

Grammar (keywords are case-insensitive):

    expr      := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | "(" expr ")" | condition
    condition := source [op value | ["not"] "in" "(" value ("," value)* ")"]
    source    := tag | attributes.KEY | name | email | phone | timezone | locale
               | consent.PURPOSE.CHANNEL | channel | event.(TYPE|'type') within DURATION
               | created within DURATION
    op        := = | != | < | <= | > | >=
    value     := 'text' ('' for a quote) | number | true | false | null

A bare source is a test: `consent.marketing.email` (granted), `event.purchase
within 60d` (at least one), `created within 7d`, `attributes.vip` (true).
`channel = 'sms'` means the customer can be reached there: a reachable identity,
or (email, sms) a profile address not known to bounce, as the cascade decides.
A comparison with a missing value is false, so `not attributes.city = 'X'`
includes customers without a city while `attributes.city != 'X'` does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flows.spec import CHANNELS, parse_duration

__all__ = [
    "Both",
    "Condition",
    "Node",
    "Not",
    "SegmentError",
    "Source",
    "Token",
    "Value",
    "parse_tree",
    "tokenize",
]

FIELDS = ("name", "email", "phone", "timezone", "locale")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
KEYWORDS = ("and", "or", "not", "in", "within", "true", "false", "null")
MAX_LENGTH = 2000
MAX_DEPTH = 50

Value = str | int | float | bool | None


class SegmentError(ValueError):
    """The expression is wrong at `position` (0-based character offset)."""

    def __init__(self, position: int, message: str) -> None:
        self.position = position
        self.message = message
        super().__init__(f"at {position + 1}: {message}")


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # ident, keyword, string, number, duration, op, punct, end
    text: str
    value: Value
    position: int


_SPACE = re.compile(r"\s+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION = re.compile(r"(?:\d+[wdhms])+(?![A-Za-z0-9_])")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?![A-Za-z0-9_])")
_OP = re.compile(r"!=|<>|<=|>=|=|<|>")


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an `end` token; SegmentError on a stray character."""
    if len(text) > MAX_LENGTH:
        raise SegmentError(MAX_LENGTH, f"a segment is at most {MAX_LENGTH} characters")
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        space = _SPACE.match(text, at)
        if space:
            at = space.end()
            continue
        char = text[at]
        if char == "'":
            value, end = _string(text, at)
            tokens.append(Token("string", text[at:end], value, at))
            at = end
            continue
        match = _DURATION.match(text, at)
        if match:
            tokens.append(Token("duration", match[0], match[0], at))
        elif match := _NUMBER.match(text, at):
            number = float(match[0]) if "." in match[0] else int(match[0])
            tokens.append(Token("number", match[0], number, at))
        elif match := _IDENT.match(text, at):
            word = match[0]
            if word.lower() in KEYWORDS:
                tokens.append(Token("keyword", word.lower(), word.lower(), at))
            else:
                tokens.append(Token("ident", word, word, at))
        elif match := _OP.match(text, at):
            op = "!=" if match[0] == "<>" else match[0]
            tokens.append(Token("op", op, op, at))
        elif char in "(),.":
            tokens.append(Token("punct", char, char, at))
            at += 1
            continue
        else:
            raise SegmentError(at, f"unexpected character {char!r}")
        at = match.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    out = []
    at = start + 1
    while at < len(text):
        if text[at] == "'":
            if text.startswith("''", at):
                out.append("'")
                at += 2
                continue
            return "".join(out), at + 1
        out.append(text[at])
        at += 1
    raise SegmentError(start, "this string is never closed (a quote inside is written '')")


# ---------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Source:
    """What a condition looks at: tag, attribute, field, consent, channel, event, created."""

    kind: str
    position: int
    key: str = ""  # attribute key, field name, event type, consent purpose
    channel: str = ""  # consent channel
    within: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    source: Source
    op: str | None  # None: a bare test
    values: tuple[Value, ...] = ()


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Both:
    operator: str  # and | or
    operands: tuple[Node, ...]


Node = Condition | Not | Both


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.at = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        token = self.token
        if token.kind == kind and (text is None or token.text == text):
            self.at += 1
            return token
        return None

    def expect(self, kind: str, text: str | None, what: str) -> Token:
        token = self.accept(kind, text)
        if token is None:
            raise SegmentError(self.token.position, f"expected {what}, found {_shown(self.token)}")
        return token

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise SegmentError(0, "the segment is empty")
        node = self.expression()
        if self.token.kind != "end":
            raise SegmentError(
                self.token.position, f"expected and, or or the end, found {_shown(self.token)}"
            )
        return node

    def expression(self) -> Node:
        return self._chain("or", self.conjunction)

    def conjunction(self) -> Node:
        return self._chain("and", self.negation)

    def _chain(self, word: str, part: Any) -> Node:
        nodes = [part()]
        while self.accept("keyword", word):
            nodes.append(part())
        return nodes[0] if len(nodes) == 1 else Both(word, tuple(nodes))

    def negation(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SegmentError(self.token.position, "the segment is nested too deeply")
        try:
            if self.accept("keyword", "not"):
                return Not(self.negation())
            if self.accept("punct", "("):
                node = self.expression()
                self.expect("punct", ")", "')'")
                return node
            return self.condition()
        finally:
            self.depth -= 1

    def condition(self) -> Condition:
        source = self.source()
        token = self.token
        if token.kind == "op":
            self.take()
            value = self.value()
            _check_comparison(source, token, value)
            return Condition(source, token.text, (value,))
        negated = token.kind == "keyword" and token.text == "not"
        if negated and self.tokens[self.at + 1].text == "in":
            self.take()
        if self.accept("keyword", "in"):
            self.expect("punct", "(", "'(' after in")
            values = [self.value()]
            while self.accept("punct", ","):
                values.append(self.value())
            self.expect("punct", ")", "')' to close the list")
            for value in values:
                _check_comparison(source, token, value, listed=True)
            return Condition(source, "not in" if negated else "in", tuple(values))
        if source.kind in ("tag", "field", "channel"):
            raise SegmentError(token.position, f"expected = != < <= > >= or in after {source.kind}")
        return Condition(source, None)

    def source(self) -> Source:
        token = self.token
        if token.kind != "ident":
            raise SegmentError(token.position, f"expected a condition, found {_shown(token)}")
        self.take()
        word = token.text
        if word == "tag":
            return Source("tag", token.position)
        if word == "channel":
            return Source("channel", token.position)
        if word in FIELDS:
            return Source("field", token.position, key=word)
        if word == "attributes":
            return Source("attribute", token.position, key=self.dotted("an attribute name"))
        if word == "consent":
            purpose = self.dotted("a consent purpose, e.g. consent.marketing.email")
            channel = self.dotted("a channel, e.g. consent.marketing.email")
            if channel not in CHANNELS:
                raise SegmentError(
                    self.tokens[self.at - 1].position, f"{channel!r} is not a channel"
                )
            return Source("consent", token.position, key=purpose, channel=channel)
        if word == "event":
            kind = self.dotted("an event type, e.g. event.purchase within 60d", quoted=True)
            return Source("event", token.position, key=kind, within=self.within())
        if word == "created":
            return Source("created", token.position, within=self.within())
        raise SegmentError(
            token.position,
            f"unknown source {word!r}: use tag, attributes.<key>, {', '.join(FIELDS)}, "
            "consent.<purpose>.<channel>, channel, event.<type> within <duration>, "
            "created within <duration>",
        )

    def dotted(self, what: str, *, quoted: bool = False) -> str:
        """The name after a dot; `quoted` also takes 'a string' (event types with dots)."""
        self.expect("punct", ".", f"'.' and {what}")
        token = self.token
        if quoted and token.kind == "string" and str(token.value).strip():
            self.take()
            return str(token.value)
        if token.kind not in ("ident", "keyword"):
            raise SegmentError(token.position, f"expected {what}, found {_shown(token)}")
        self.take()
        return token.text

    def within(self) -> timedelta:
        self.expect("keyword", "within", "within <duration>")
        token = self.expect("duration", None, "a duration such as 60d or 1h30m")
        try:
            return parse_duration(token.text)
        except ValueError as exc:
            raise SegmentError(token.position, str(exc)) from exc

    def value(self) -> Value:
        token = self.token
        if token.kind in ("string", "number"):
            self.take()
            return token.value
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.take()
            return {"true": True, "false": False, "null": None}[token.text]
        raise SegmentError(
            token.position,
            f"expected a value ('text', a number, true, false, null), found {_shown(token)}",
        )


def _shown(token: Token) -> str:
    return "the end" if token.kind == "end" else repr(token.text)


def _check_comparison(source: Source, token: Token, value: Value, *, listed: bool = False) -> None:
    """Refuse comparisons that could never mean anything, at the operator's position."""
    op = token.text
    where = token.position
    if source.kind in ("tag", "channel"):
        if op not in ("=", "!=", "in", "not") or not isinstance(value, str):
            raise SegmentError(where, f"{source.kind} is compared with = != or in and 'text'")
        if source.kind == "channel" and value not in CHANNELS:
            raise SegmentError(where, f"{value!r} is not a channel")
    elif source.kind == "field":
        if not (isinstance(value, str) or (value is None and op in ("=", "!="))):
            raise SegmentError(where, f"{source.key} is compared with 'text' (or = null)")
    elif source.kind == "event":
        if listed or isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SegmentError(where, "an event count is compared with a whole number")
    elif source.kind in ("consent", "created"):
        if op not in ("=", "!=") or not isinstance(value, bool):
            raise SegmentError(where, f"{source.kind} is a test: compare it with true or false")
    elif source.kind == "attribute":
        if value is None and op not in ("=", "!="):
            raise SegmentError(where, "null is compared with = or != only")
        if isinstance(value, bool) and op not in ("=", "!=", "in", "not"):
            raise SegmentError(where, "true and false are compared with = or != only")


def parse_tree(text: str) -> Node:
    """The tree of `text`; SegmentError says where and what is wrong."""
    return _Parser(text).parse()
