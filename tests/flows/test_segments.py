"""The segment language: parsing with positions, and the SQL it selects on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col

from flows.segments import SegmentError, parse_segment
from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.events import Events
from storage.models import Customer, Identity

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
INJECTED_TAG = "x' OR 1=1 --"


async def _people(db: Database) -> dict[str, int]:
    """Five customers whose differences each segment source can tell apart."""
    ids: dict[str, int] = {}
    async with db.session() as s:
        customers = Customers(s)
        anna, _ = await customers.upsert(
            email="anna@example.com",
            name="Anna",
            attributes={"city": "Москва", "age": 30, "vip": True},
            tags=["vip"],
            consents=[ConsentIn(channel="email", purpose="marketing", granted=True)],
            timezone="Europe/Moscow",
        )
        boris, _ = await customers.upsert(
            email="boris@example.com",
            name="Boris",
            attributes={"city": "Kazan", "age": "30", "vip": False},
            tags=["test"],
            consents=[
                ConsentIn(channel="*", purpose="marketing", granted=True),
                ConsentIn(channel="email", purpose="marketing", granted=False),
            ],
        )
        clara, _ = await customers.upsert(phone="+79990000003", name="Clara")
        gone, _ = await customers.upsert(email="gone@example.com", tags=["vip"])
        mallory, _ = await customers.upsert(email="m@example.com", tags=[INJECTED_TAG])
        for key, customer in [
            ("anna", anna),
            ("boris", boris),
            ("clara", clara),
            ("gone", gone),
            ("mallory", mallory),
        ]:
            assert customer.id is not None
            ids[key] = customer.id
        s.add_all(
            [
                Identity(customer_id=ids["anna"], channel="telegram", account="bot", address="1"),
                Identity(
                    customer_id=ids["boris"],
                    channel="vk",
                    account="1",
                    address="2",
                    reachable=False,
                    unreachable_reason="blocked the bot",
                ),
                Identity(customer_id=ids["clara"], channel="sms", account="cg", address="3"),
                Identity(
                    customer_id=ids["mallory"],
                    channel="email",
                    account="shop",
                    address="m@example.com",
                    reachable=False,
                    unreachable_reason="hard bounce",
                ),
            ]
        )
        events = Events(s)
        await events.record(
            customer_id=ids["anna"], type="purchase", occurred_at=NOW - timedelta(days=10)
        )
        await events.record(
            customer_id=ids["boris"], type="purchase", occurred_at=NOW - timedelta(days=90)
        )
        await events.record(
            customer_id=ids["boris"], type="order.placed", occurred_at=NOW - timedelta(hours=1)
        )
        for days in (1, 2):
            await events.record(
                customer_id=ids["clara"], type="purchase", occurred_at=NOW - timedelta(days=days)
            )
        await s.execute(
            sa.update(Customer)
            .where(col(Customer.id) == ids["gone"])
            .values(erased_at=NOW - timedelta(days=1))
        )
        await s.execute(sa.update(Customer).values(created_at=NOW - timedelta(days=30)))
        await s.execute(
            sa.update(Customer)
            .where(col(Customer.id) == ids["clara"])
            .values(created_at=NOW - timedelta(days=2))
        )
    return ids


async def _select(db: Database, text: str, ids: dict[str, int]) -> set[str]:
    names = {v: k for k, v in ids.items()}
    async with db.session() as s:
        found = list(await s.scalars(parse_segment(text).select_ids(NOW)))
    assert found == sorted(found), "select_ids orders by id"
    return {names.get(i, f"other:{i}") for i in found}


CASES = [
    ("tag = 'vip'", {"anna"}),  # the erased customer also has the tag
    ("tag != 'vip'", {"boris", "clara", "mallory"}),
    ("tag in ('vip', 'test')", {"anna", "boris"}),
    ("not tag = 'test' and tag = 'vip'", {"anna"}),
    ("attributes.city = 'Москва'", {"anna"}),
    ("attributes.city != 'Москва'", {"boris"}),  # no city: not compared
    ("not attributes.city = 'Москва'", {"boris", "clara", "mallory"}),
    ("attributes.age >= 30", {"anna"}),  # Boris' "30" is text, not a number
    ("attributes.age = '30'", {"boris"}),
    ("attributes.age < 18", set()),
    ("attributes.vip", {"anna"}),
    ("attributes.vip = false", {"boris"}),
    ("attributes.city in ('Kazan', 'Москва')", {"anna", "boris"}),
    ("attributes.city = null", {"clara", "mallory"}),
    ("name = 'Clara' or email = 'anna@example.com'", {"anna", "clara"}),
    ("phone != null", {"clara"}),
    ("consent.marketing.email", {"anna"}),  # Boris said no on email, yes on "*"
    ("consent.marketing.telegram", {"boris"}),
    ("consent.marketing.email = false", {"boris", "clara", "mallory"}),
    ("channel = 'telegram'", {"anna"}),
    ("channel = 'vk'", set()),  # Boris blocked the bot
    ("channel in ('sms', 'vk')", {"clara"}),
    ("channel = 'email'", {"anna", "boris"}),  # a profile address counts; Mallory's bounced
    ("channel != 'email'", {"clara", "mallory"}),
    ("channel = 'sms'", {"clara"}),
    ("event.purchase within 60d", {"anna", "clara"}),
    ("event.purchase within 60d = 0", {"boris", "mallory"}),
    ("event.purchase within 1w >= 2", {"clara"}),
    ("event.purchase within 100d = 1", {"anna", "boris"}),
    ("created within 7d", {"clara"}),
    ("event.'order.placed' within 1d", {"boris"}),  # a type with a dot, quoted
    ("event.order within 1d", set()),
    ("(tag = 'vip' or tag = 'test') and not (attributes.city = 'Kazan')", {"anna"}),
    (
        "tag = 'vip' and consent.marketing.email and channel = 'telegram' "
        "and event.purchase within 60d = 1 and attributes.city = 'Москва' and not tag = 'test'",
        {"anna"},
    ),
]


async def test_each_source_selects_the_right_customers(database: Database) -> None:
    ids = await _people(database)
    wrong = []
    for text, expected in CASES:
        found = await _select(database, text, ids)
        if found != expected:
            wrong.append(f"{text!r}: got {sorted(found)}, expected {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


async def test_injection_attempts_are_inert_data_or_refused(database: Database) -> None:
    ids = await _people(database)
    # A quote doubled inside a string is part of the value: it matches the one
    # customer whose tag is literally that text, not everyone.
    assert await _select(database, "tag = 'x'' OR 1=1 --'", ids) == {"mallory"}
    assert await _select(database, "name = 'a'' or ''1''=''1'", ids) == set()
    assert await _select(database, "attributes.city = ''';DROP TABLE customer;--'", ids) == set()
    for text in (
        "attributes.a;drop table customer",
        "tag = 'vip'; DROP TABLE customer; --",
        "tag = 'vip' -- and tag = 'test'",
        "attributes.\"city\" = 'x'",
        "tag = 'vip' OR 1=1",
        "name = name",
        "attributes.city = 'x' union select 1",
        "event.purchase within 60d = (select 1)",
    ):
        with pytest.raises(SegmentError):
            parse_segment(text)
    async with database.session() as s:
        alive = await s.scalar(sa.select(sa.func.count()).select_from(Customer))
    assert alive == 5  # nothing dropped


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_values_travel_as_bound_parameters(dialect: sa.Dialect) -> None:
    segment = parse_segment(
        "tag = 'x'' OR 1=1 --' or attributes.zz_key = 'Москва' or name in ('q1', 'q2') "
        "or event.zz_type within 3d > 7 or consent.zz_purpose.sms"
    )
    sql = str(segment.select_ids(NOW).compile(dialect=dialect))
    for literal in ("OR 1=1", "zz_key", "Москва", "q1", "zz_type", "zz_purpose", "7"):
        assert literal not in sql, f"{literal!r} was written into the SQL:\n{sql}"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty"),
        ("tag = ", 6, "expected a value"),
        ("tag = 'vip", 6, "never closed"),
        ("tag = 'vip' and", 15, "expected a condition"),
        ("tag > 'vip'", 4, "compared with = != or in"),
        ("colour = 'red'", 0, "unknown source 'colour'"),
        ("consent.marketing.fax", 18, "'fax' is not a channel"),
        ("channel = 'fax'", 8, "'fax' is not a channel"),
        ("event.purchase = 1", 15, "within"),
        ("event.purchase within 60 = 1", 22, "a duration"),
        ("event.purchase within 60d = 'x'", 26, "whole number"),
        ("(tag = 'a'", 10, "')'"),
        ("tag = 'a')", 9, "expected and, or or the end"),
        ("tag = 'a' & tag = 'b'", 10, "unexpected character '&'"),
        ("tag", 3, "expected = != < <= > >= or in"),
        ("created within 7d = 3", 18, "true or false"),
        ("attributes.age < null", 15, "null"),
    ],
)
def test_mistakes_are_refused_with_their_position(text: str, position: int, message: str) -> None:
    with pytest.raises(SegmentError) as info:
        parse_segment(text)
    assert info.value.position == position, str(info.value)
    assert message in info.value.message
    assert str(info.value).startswith(f"at {position + 1}: ")


def test_nesting_and_length_are_bounded() -> None:
    with pytest.raises(SegmentError, match="nested too deeply"):
        parse_segment("not " * 60 + "tag = 'a'")
    with pytest.raises(SegmentError, match="at most"):
        parse_segment("tag = '" + "a" * 3000 + "'")
    assert parse_segment("NOT tag = 'a' AND tag = 'b' Or tag <> 'c'").text


WORDS = st.sampled_from(
    ["tag", "attributes", ".", "city", "=", "!=", "<", "'x'", "''", "'a''b'", "1", "-2.5",
     "and", "or", "not", "in", "(", ")", ",", "event", "purchase", "within", "60d", "consent",
     "marketing", "email", "channel", "'sms'", "created", "true", "null", ";", "--", "\"", "name"]
)  # fmt: skip


@given(st.one_of(st.text(max_size=80), st.lists(WORDS, max_size=25).map(" ".join)))
def test_any_text_parses_or_is_refused_with_a_position(text: str) -> None:
    try:
        segment = parse_segment(text)
    except SegmentError as exc:
        position = exc.position
        segment = None
    else:
        position = 0
    assert 0 <= position <= len(text)
    if segment is None:
        return
    # Whatever parses also compiles, with nothing from the text in the SQL but names.
    sql = str(segment.select_ids(NOW).compile(dialect=postgresql.dialect()))
    assert "'x'" not in sql
