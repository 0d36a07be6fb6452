"""The segment language: who a broadcast reaches and what an `if` step tests.

    tag = 'vip' and consent.marketing.email and channel = 'telegram'
    and event.purchase within 60d = 0 and attributes.city = 'Москва' and not tag = 'test'

A real tokenizer and a recursive-descent parser turn the text into a small tree;
`Segment.where(now)` compiles the tree into a SQLAlchemy expression over
`Customer` in which every value from the text is a bound parameter. Nothing the
text says is ever spliced into SQL: names are checked against fixed lists or an
identifier pattern, and values only travel as parameters.

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

import operator
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import col

from flows.spec import CHANNELS, parse_duration
from storage.models import Consent, Customer, CustomerTag, Event, Identity

__all__ = ["Segment", "SegmentError", "parse_segment"]

FIELDS = ("name", "email", "phone", "timezone", "locale")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
KEYWORDS = ("and", "or", "not", "in", "within", "true", "false", "null")
MAX_LENGTH = 2000
MAX_DEPTH = 50

Value = str | int | float | bool | None
_CUSTOMER: sa.Table = Customer.__table__  # type: ignore[attr-defined]


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


# ---------------------------------------------------------------- SQL


class _JsonValue(FunctionElement[Any]):
    """One top-level attribute of Customer.attributes, NULL unless it has the JSON type asked.

    The guard keeps a string attribute from failing a numeric cast on PostgreSQL
    and makes both backends agree. Clauses: the column and the key (a bound
    parameter).
    """

    inherit_cache = True
    json_kind = "text"


class _JsonText(_JsonValue):
    inherit_cache = True
    name = "json_text"
    type = sa.String()


class _JsonNumber(_JsonValue):
    inherit_cache = True
    name = "json_number"
    json_kind = "number"
    type = sa.Float()


class _JsonBool(_JsonValue):
    inherit_cache = True
    name = "json_bool"
    json_kind = "boolean"
    type = sa.Boolean()


def _parts(element: _JsonValue, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    column, key = (compiler.process(c, **kw) for c in element.clauses)
    return column, key


@compiles(_JsonValue, "postgresql")
def _json_postgres(element: _JsonValue, compiler: SQLCompiler, **kw: Any) -> str:
    column, key = _parts(element, compiler, **kw)
    typeof = f"json_typeof(({column})::json -> {key})"
    text = f"(({column})::json ->> {key})"
    if element.json_kind == "number":
        return f"(CASE WHEN {typeof} = 'number' THEN CAST({text} AS DOUBLE PRECISION) END)"
    if element.json_kind == "boolean":
        return f"(CASE WHEN {typeof} = 'boolean' THEN CAST({text} AS BOOLEAN) END)"
    return f"(CASE WHEN {typeof} = 'string' THEN {text} END)"


@compiles(_JsonValue, "sqlite")
def _json_sqlite(element: _JsonValue, compiler: SQLCompiler, **kw: Any) -> str:
    column, key = _parts(element, compiler, **kw)
    path = f"('$.\"' || {key} || '\"')"  # the key is an identifier, bound as a parameter
    kind = f"json_type({column}, {path})"
    value = f"json_extract({column}, {path})"
    if element.json_kind == "number":
        return f"(CASE WHEN {kind} IN ('integer', 'real') THEN {value} END)"
    if element.json_kind == "boolean":
        return f"(CASE WHEN {kind} IN ('true', 'false') THEN {kind} = 'true' END)"
    return f"(CASE WHEN {kind} = 'text' THEN {value} END)"


def _attribute(key: str, value: Value) -> ColumnElement[Any]:
    column = col(Customer.attributes)
    key_param = sa.bindparam(None, key, type_=sa.String(), unique=True)
    if isinstance(value, bool):
        return _JsonBool(column, key_param)
    if isinstance(value, (int, float)):
        return _JsonNumber(column, key_param)
    return _JsonText(column, key_param)


def _compare(target: ColumnElement[Any], op: str, value: Value) -> ColumnElement[bool]:
    if value is None:
        return target.is_(None) if op == "=" else target.is_not(None)
    compare = {
        "=": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op]
    bound = sa.bindparam(None, value, type_=target.type, unique=True)
    compared: ColumnElement[bool] = compare(target, bound)
    return sa.and_(target.is_not(None), compared)


def _member(target: ColumnElement[Any], op: str, values: tuple[Value, ...]) -> ColumnElement[bool]:
    listed = [v for v in values if v is not None]
    present = target.is_not(None)
    if op == "in":
        inside = sa.and_(present, target.in_(listed))
        return sa.or_(inside, target.is_(None)) if None in values else inside
    return sa.and_(present, target.not_in(listed))


def _customer_id() -> ColumnElement[Any]:
    return _CUSTOMER.c.id


def _tag(node: Condition, now: datetime) -> ColumnElement[bool]:
    tags = sa.select(sa.literal(1)).where(col(CustomerTag.customer_id) == _customer_id())
    found = sa.exists(tags.where(col(CustomerTag.tag).in_(list(node.values))))
    return found if node.op in ("=", "in") else ~found


def _reachable(channel: str) -> ColumnElement[bool]:
    """A reachable identity on `channel`, or (email, sms) the profile's address not known dead.

    The same rule the cascade uses to pick where a message goes.
    """
    on_channel = (col(Identity.customer_id) == _customer_id(), col(Identity.channel) == channel)
    alive = sa.exists(
        sa.select(sa.literal(1)).where(*on_channel, col(Identity.reachable).is_(True))
    )
    profile = {"email": _CUSTOMER.c.email, "sms": _CUSTOMER.c.phone}.get(channel)
    if profile is None:
        return alive
    dead = sa.exists(
        sa.select(sa.literal(1)).where(
            *on_channel, col(Identity.reachable).is_(False), col(Identity.address) == profile
        )
    )
    return sa.or_(alive, sa.and_(profile.is_not(None), sa.not_(dead)))


def _channel(node: Condition, now: datetime) -> ColumnElement[bool]:
    found = sa.or_(*(_reachable(str(channel)) for channel in node.values))
    return found if node.op in ("=", "in") else sa.not_(found)


def _field(node: Condition, now: datetime) -> ColumnElement[bool]:
    target: ColumnElement[Any] = _CUSTOMER.c[node.source.key]
    if node.op in ("in", "not in"):
        return _member(target, node.op, node.values)
    return _compare(target, node.op or "=", node.values[0])


def _attribute_condition(node: Condition, now: datetime) -> ColumnElement[bool]:
    key, op, values = node.source.key, node.op, node.values
    if op is None:
        return _compare(_attribute(key, True), "=", True)
    if op not in ("in", "not in"):
        return _compare(_attribute(key, values[0]), op, values[0])
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) <= 1 or kinds <= {int, float}:
        sample = next((v for v in values if v is not None), "")
        return _member(_attribute(key, sample), op, values)
    # A list mixing text and numbers: each value is tested against its own JSON type.
    found = sa.or_(*(_compare(_attribute(key, v), "=", v) for v in values))
    return found if op == "in" else sa.and_(_attribute_present(key), sa.not_(found))


def _wanted(node: Condition) -> bool:
    """A test (`consent...`, `created within`) or its comparison with true/false."""
    return node.op is None or (node.values[0] is (node.op == "="))


def _consent_condition(node: Condition, now: datetime) -> ColumnElement[bool]:
    granted = _consent(node.source.key, node.source.channel)
    return granted if _wanted(node) else sa.not_(granted)


def _created(node: Condition, now: datetime) -> ColumnElement[bool]:
    assert node.source.within is not None
    recent = col(Customer.created_at) >= now - node.source.within
    return recent if _wanted(node) else sa.not_(recent)


def _events(node: Condition, now: datetime) -> ColumnElement[bool]:
    assert node.source.within is not None
    where = (
        col(Event.customer_id) == _customer_id(),
        col(Event.type) == node.source.key,
        col(Event.occurred_at) >= now - node.source.within,
    )
    if node.op is None:
        return sa.exists(sa.select(sa.literal(1)).where(*where))
    count = sa.select(sa.func.count()).where(*where).scalar_subquery()
    return _compare(count, node.op, node.values[0])


_CONDITIONS = {
    "tag": _tag,
    "channel": _channel,
    "field": _field,
    "attribute": _attribute_condition,
    "consent": _consent_condition,
    "created": _created,
    "event": _events,
}


def _attribute_present(key: str) -> ColumnElement[bool]:
    return sa.or_(
        _attribute(key, "").is_not(None),
        _attribute(key, 0).is_not(None),
        _attribute(key, True).is_not(None),
    )


def _consent(purpose: str, channel: str) -> ColumnElement[bool]:
    """Granted on this channel, or on "*" when the channel has no answer of its own."""

    def answer(on: str) -> Any:
        return (
            sa.select(col(Consent.granted))
            .where(
                col(Consent.customer_id) == _customer_id(),
                col(Consent.purpose) == purpose,
                col(Consent.channel) == on,
            )
            .scalar_subquery()
        )

    return sa.func.coalesce(answer(channel), answer("*"), sa.false()) == sa.true()


def _compile(node: Node, now: datetime) -> ColumnElement[bool]:
    if isinstance(node, Condition):
        return _CONDITIONS[node.source.kind](node, now)
    if isinstance(node, Not):
        return sa.not_(_compile(node.operand, now))
    parts = [_compile(operand, now) for operand in node.operands]
    return sa.and_(*parts) if node.operator == "and" else sa.or_(*parts)


@dataclass(frozen=True, slots=True)
class Segment:
    """A parsed segment expression; `where(now)` is its SQL over Customer."""

    text: str
    tree: Node

    def where(self, now: datetime) -> ColumnElement[bool]:
        """The condition on `Customer` (every value a bound parameter)."""
        return _compile(self.tree, now)

    def select_ids(self, now: datetime) -> sa.Select[Any]:
        """Ids of living customers in the segment, ordered by id (for planning in batches)."""
        return (
            sa.select(col(Customer.id))
            .where(
                self.where(now),
                col(Customer.erased_at).is_(None),
                col(Customer.merged_into_id).is_(None),
            )
            .order_by(col(Customer.id))
        )

    def matches_id(self, customer_id: int, now: datetime) -> sa.Select[Any]:
        """A query returning `customer_id` if that customer is in the segment (for `if`)."""
        return self.select_ids(now).where(col(Customer.id) == customer_id)


def parse_segment(text: str) -> Segment:
    """The segment for `text`; SegmentError says where and what is wrong."""
    return Segment(text, _Parser(text).parse())
