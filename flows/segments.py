"""Segments: who a broadcast reaches and what an `if` step tests, as SQL.

    tag = 'vip' and consent.marketing.email and channel = 'telegram'
    and event.purchase within 60d = 0 and attributes.city = 'Москва' and not tag = 'test'

`parse_segment` parses the text (grammar in `flows/segment_syntax.py`) and
`Segment.where(now)` compiles the tree into a SQLAlchemy expression over
`Customer` in which every value from the text is a bound parameter. Nothing the
text says is ever spliced into SQL: names were checked by the parser, and values
only travel as parameters.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import col

from flows.segment_syntax import Condition, Node, Not, SegmentError, Value, parse_tree
from storage.models import Consent, Customer, CustomerTag, Event, Identity

__all__ = ["Segment", "SegmentError", "parse_segment"]

_CUSTOMER: sa.Table = Customer.__table__  # type: ignore[attr-defined]


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
    return Segment(text, parse_tree(text))
