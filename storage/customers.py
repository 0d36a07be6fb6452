"""Customers: find, create-or-update by their keys, tags, consents, search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.addresses import normalize_email, normalize_phone
from storage.errors import Conflict, NotFound, StoreError
from storage.inserts import insert
from storage.models import Channel, Consent, Customer, CustomerTag, Identity, utcnow
from storage.pages import Page, encode_cursor, int_cursor

__all__ = ["ConsentIn", "Customers"]

KEYS = ("external_id", "phone", "email")
CONSENT_CHANNELS = frozenset({"*", *Channel})


@dataclass(frozen=True)
class ConsentIn:
    """A customer's yes or no to messages of `purpose` on `channel` ("*": every channel)."""

    channel: str
    purpose: str
    granted: bool
    source: str | None = None


class Customers:
    """Customer rows of one session; never commits."""

    def __init__(self, session: AsyncSession, *, region: str = "RU") -> None:
        self.session = session
        self.region = region

    async def get(self, customer_id: int) -> Customer:
        """The customer, or the one it was merged into; NotFound if there is none."""
        customer = await self._load(customer_id)
        if customer is None:
            raise NotFound("customer", customer_id)
        return await self._survivor(customer)

    async def find(
        self,
        *,
        id: int | None = None,
        phone: str | None = None,
        email: str | None = None,
        external_id: str | None = None,
    ) -> Customer | None:
        """The customer with any of these keys (the first given wins), or None."""
        if id is not None:
            customer = await self._load(id)
            return None if customer is None else await self._survivor(customer)
        for field, value in self._keys(external_id, phone, email):
            holder = await self._holder(field, value)
            if holder is not None:
                return await self._survivor(holder)
        return None

    async def upsert(
        self,
        *,
        external_id: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        name: str | None = None,
        timezone: str | None = None,
        locale: str | None = None,
        attributes: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        consents: list[ConsentIn] | None = None,
    ) -> tuple[Customer, bool]:
        """Create or update the customer these keys point at; (customer, created).

        Keys are tried in order external_id, phone, email. Keys pointing at two
        different customers raise Conflict naming the key that disagrees.
        """
        keys = self._keys(external_id, phone, email)
        if not keys:
            raise ValueError("at least one of external_id, phone, email is required")
        if timezone is not None:
            _check_timezone(timezone)
        for consent in consents or ():
            _check_consent(consent)
        created = False
        # Two passes at most: a concurrent upsert may create the row between our
        # look-up and our insert; then the second pass updates what it created.
        for _ in range(2):
            customer, holders = await self._match(keys)
            if customer is None:
                customer = await self._insert(dict(keys), name, timezone, locale, attributes)
                if customer is None:
                    continue
                created = True
            else:
                await self._update(customer, keys, holders, name, timezone, locale, attributes)
            break
        else:
            raise Conflict(keys[0][0], "the customer changed concurrently; retry")
        assert customer.id is not None
        if tags is not None:
            await self._replace_tags(customer.id, tags)
        for consent in consents or ():
            await self.set_consent(customer.id, consent)
        return customer, created

    async def tags(self, customer_id: int) -> list[str]:
        rows = await self.session.scalars(
            sa.select(col(CustomerTag.tag))
            .where(col(CustomerTag.customer_id) == customer_id)
            .order_by(col(CustomerTag.tag))
        )
        return list(rows)

    async def consents(self, customer_id: int) -> list[Consent]:
        rows = await self.session.scalars(
            sa.select(Consent)
            .where(col(Consent.customer_id) == customer_id)
            .order_by(col(Consent.channel), col(Consent.purpose))
            .execution_options(populate_existing=True)
        )
        return list(rows)

    async def set_consent(self, customer_id: int, consent: ConsentIn) -> None:
        """Record the customer's latest answer for (channel, purpose)."""
        _check_consent(consent)
        now = utcnow()
        stmt = insert(self.session, Consent).values(
            customer_id=customer_id,
            channel=consent.channel,
            purpose=consent.purpose,
            granted=consent.granted,
            source=consent.source,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["customer_id", "channel", "purpose"],
            set_={"granted": consent.granted, "source": consent.source, "updated_at": now},
        )
        await self.session.execute(stmt)

    async def search(
        self,
        *,
        q: str | None = None,
        channel: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Customer]:
        """Customers (not merged away) matching all the filters given, by id."""
        after = int_cursor(cursor)
        limit = max(1, min(limit, 500))
        stmt = sa.select(Customer).where(col(Customer.merged_into_id).is_(None))
        if q is not None and q.strip():
            stmt = stmt.where(self._text_filter(q.strip()))
        if channel is not None:
            stmt = stmt.where(
                sa.exists().where(
                    col(Identity.customer_id) == col(Customer.id), col(Identity.channel) == channel
                )
            )
        if tag is not None:
            stmt = stmt.where(
                sa.exists().where(
                    col(CustomerTag.customer_id) == col(Customer.id), col(CustomerTag.tag) == tag
                )
            )
        if after is not None:
            stmt = stmt.where(col(Customer.id) > after)
        rows = list(await self.session.scalars(stmt.order_by(col(Customer.id)).limit(limit + 1)))
        more = len(rows) > limit
        items = rows[:limit]
        return Page(items, encode_cursor(items[-1].id) if more else None)

    def _text_filter(self, q: str) -> sa.ColumnElement[bool]:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses: list[sa.ColumnElement[bool]] = [
            col(Customer.name).ilike(pattern, escape="\\"),
            col(Customer.email).ilike(pattern, escape="\\"),
            col(Customer.external_id) == q,
        ]
        digits = "".join(ch for ch in q if ch.isdigit())
        if len(digits) >= 3:
            try:
                clauses.append(col(Customer.phone) == normalize_phone(q, self.region))
            except ValueError:
                clauses.append(col(Customer.phone).contains(digits))
        return sa.or_(*clauses)

    def _keys(
        self, external_id: str | None, phone: str | None, email: str | None
    ) -> list[tuple[str, str]]:
        keys: list[tuple[str, str]] = []
        if external_id is not None:
            if not external_id.strip():
                raise ValueError("external_id must not be blank")
            keys.append(("external_id", external_id.strip()))
        if phone is not None:
            keys.append(("phone", normalize_phone(phone, self.region)))
        if email is not None:
            keys.append(("email", normalize_email(email)))
        return keys

    async def _load(self, customer_id: int) -> Customer | None:
        return await self.session.get(Customer, customer_id, populate_existing=True)

    async def _survivor(self, customer: Customer) -> Customer:
        seen: set[int | None] = {customer.id}
        while customer.merged_into_id is not None:
            survivor = await self._load(customer.merged_into_id)
            if survivor is None or survivor.id in seen:
                raise StoreError(f"customer {customer.id} is merged into a missing customer")
            seen.add(survivor.id)
            customer = survivor
        return customer

    async def _holder(self, field: str, value: str) -> Customer | None:
        result = await self.session.scalars(
            sa.select(Customer)
            .where(getattr(Customer, field) == value)
            .execution_options(populate_existing=True)
        )
        return result.first()

    async def _match(
        self, keys: list[tuple[str, str]]
    ) -> tuple[Customer | None, dict[str, Customer]]:
        """The one customer the keys point at, and which row holds each key now."""
        found: Customer | None = None
        first_field = ""
        holders: dict[str, Customer] = {}
        for field, value in keys:
            holder = await self._holder(field, value)
            if holder is None:
                continue
            holders[field] = holder
            survivor = await self._survivor(holder)
            if found is None:
                found, first_field = survivor, field
            elif survivor.id != found.id:
                raise Conflict(
                    field,
                    f"{field} {value!r} belongs to customer {survivor.id}, "
                    f"but {first_field} points at customer {found.id}",
                )
        return found, holders

    async def _insert(
        self,
        keys: dict[str, str],
        name: str | None,
        timezone: str | None,
        locale: str | None,
        attributes: dict[str, Any] | None,
    ) -> Customer | None:
        now = utcnow()
        values = {
            **keys,
            "name": name,
            "timezone": timezone,
            "locale": locale,
            "attributes": {k: v for k, v in (attributes or {}).items() if v is not None},
            "created_at": now,
            "updated_at": now,
        }
        # No conflict target: a clash on any of the unique keys means someone
        # else created this person a moment ago.
        stmt = insert(self.session, Customer).values(**values).on_conflict_do_nothing()
        result = await self.session.scalars(
            stmt.returning(Customer), execution_options={"populate_existing": True}
        )
        return result.first()

    async def _update(
        self,
        customer: Customer,
        keys: list[tuple[str, str]],
        holders: dict[str, Customer],
        name: str | None,
        timezone: str | None,
        locale: str | None,
        attributes: dict[str, Any] | None,
    ) -> None:
        changed_keys: list[str] = []
        for field, value in keys:
            if field in holders:
                continue  # already this person's, maybe on a row merged into them
            current = getattr(customer, field)
            if field == "external_id" and current is not None:
                raise Conflict(field, f"customer {customer.id} already has external_id {current!r}")
            setattr(customer, field, value)
            changed_keys.append(field)
        if name is not None:
            customer.name = name
        if timezone is not None:
            customer.timezone = timezone
        if locale is not None:
            customer.locale = locale
        if attributes:
            merged = dict(customer.attributes)
            for key, value in attributes.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            customer.attributes = merged
        customer.updated_at = utcnow()
        try:
            await self.session.flush()
        except IntegrityError as exc:
            field = changed_keys[0] if changed_keys else keys[0][0]
            raise Conflict(field, f"{field} is taken by another customer") from exc

    async def _replace_tags(self, customer_id: int, tags: list[str]) -> None:
        wanted = sorted({t.strip() for t in tags if t.strip()})
        if any(len(t) > 100 for t in wanted):
            raise ValueError("tags: a tag is at most 100 characters")
        await self.session.execute(
            sa.delete(CustomerTag).where(
                col(CustomerTag.customer_id) == customer_id, col(CustomerTag.tag).not_in(wanted)
            )
        )
        if wanted:
            stmt = insert(self.session, CustomerTag).values(
                [{"customer_id": customer_id, "tag": t} for t in wanted]
            )
            await self.session.execute(stmt.on_conflict_do_nothing())


def _check_timezone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"timezone: {timezone!r} is not a known IANA time zone") from exc


def _check_consent(consent: ConsentIn) -> None:
    if consent.channel not in CONSENT_CHANNELS:
        raise ValueError(
            f"consent channel {consent.channel!r} is not one of {sorted(CONSENT_CHANNELS)}"
        )
    if not consent.purpose.strip() or len(consent.purpose) > 32:
        raise ValueError("consent purpose must be 1-32 characters")
