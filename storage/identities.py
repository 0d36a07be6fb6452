"""Identities: the (channel, account, address) a customer is reachable at."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from storage.addresses import normalize_email, normalize_phone
from storage.errors import NotFound
from storage.inserts import insert
from storage.models import Channel, Customer, Identity, utcnow
from storage.updates import update_by_id

__all__ = ["Identities"]


class Identities:
    """Identity rows of one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def resolve(
        self,
        *,
        channel: str,
        account: str,
        address: str,
        display_name: str | None = None,
        username: str | None = None,
    ) -> tuple[Identity, Customer, bool]:
        """The identity and its customer, both created on first contact; created flag.

        An SMS number or a mailbox becomes the new customer's phone or email only
        when no other customer holds it: writing from an address is not proof
        enough to join someone else's profile (linking does that, on proof).
        """
        found = await self._find_with_customer(channel, account, address)
        if found is not None:
            await self._seen(found[0], display_name, username)
            return found[0], found[1], False
        identity = await self._create(channel, account, address, display_name, username)
        created = identity is not None
        if identity is None:  # a concurrent first contact won the race
            identity = await self._find(channel, account, address)
            if identity is None:
                raise NotFound("identity", f"{channel}:{account}:{address}")
        customer = await self.session.get(Customer, identity.customer_id)
        if customer is None:
            raise NotFound("customer", identity.customer_id)
        return identity, customer, created

    async def _seen(
        self, identity: Identity, display_name: str | None, username: str | None
    ) -> None:
        """The identity wrote just now, under these names: a Core UPDATE, no ORM flush.

        Every inbound message comes through here; the loaded object is set to match.
        """
        values: dict[str, object] = {"last_seen_at": utcnow()}
        if display_name and display_name != identity.display_name:
            values["display_name"] = display_name
        if username and username != identity.username:
            values["username"] = username
        assert identity.id is not None
        await update_by_id(self.session, _IDENTITY, identity.id, values)
        for name, value in values.items():
            set_committed_value(identity, name, value)

    async def for_customer(self, customer_id: int) -> list[Identity]:
        rows = await self.session.scalars(
            sa.select(Identity)
            .where(col(Identity.customer_id) == customer_id)
            .order_by(col(Identity.id))
            .execution_options(populate_existing=True)
        )
        return list(rows)

    async def get(self, identity_id: int) -> Identity:
        identity = await self.session.get(Identity, identity_id, populate_existing=True)
        if identity is None:
            raise NotFound("identity", identity_id)
        return identity

    async def mark_unreachable(self, identity_id: int, reason: str) -> None:
        """Cascades skip this address from now on: it failed finally."""
        identity = await self.get(identity_id)
        identity.reachable = False
        identity.unreachable_reason = reason[:200]
        await self.session.flush()

    async def mark_reachable(self, identity_id: int) -> None:
        identity = await self.get(identity_id)
        identity.reachable = True
        identity.unreachable_reason = None
        identity.soft_bounces = 0
        await self.session.flush()

    async def move(self, identity_id: int, customer_id: int) -> Identity:
        """Attach the identity to another customer (linking on proof, merges)."""
        identity = await self.get(identity_id)
        if await self.session.get(Customer, customer_id) is None:
            raise NotFound("customer", customer_id)
        identity.customer_id = customer_id
        await self.session.flush()
        return identity

    async def _find_with_customer(
        self, channel: str, account: str, address: str
    ) -> tuple[Identity, Customer] | None:
        """The identity and its customer in one query: every inbound message asks."""
        result = await self.session.execute(
            _WITH_CUSTOMER, {"channel": channel, "account": account, "address": address}
        )
        row = result.first()
        return None if row is None else (row[0], row[1])

    async def _find(self, channel: str, account: str, address: str) -> Identity | None:
        result = await self.session.scalars(
            sa.select(Identity)
            .where(
                col(Identity.channel) == channel,
                col(Identity.account) == account,
                col(Identity.address) == address,
            )
            .execution_options(populate_existing=True)
        )
        return result.first()

    async def _create(
        self,
        channel: str,
        account: str,
        address: str,
        display_name: str | None,
        username: str | None,
    ) -> Identity | None:
        """A new customer and identity, or None when the identity exists already."""
        now = utcnow()
        keys = _address_keys(channel, address)
        customer_id = await self._insert_customer(keys, display_name, now)
        if customer_id is None and keys:  # someone else holds that phone or email
            customer_id = await self._insert_customer({}, display_name, now)
        assert customer_id is not None
        stmt = (
            insert(self.session, Identity)
            .values(
                customer_id=customer_id,
                channel=channel,
                account=account,
                address=address,
                display_name=display_name,
                username=username,
                verified=False,
                reachable=True,
                soft_bounces=0,
                last_seen_at=now,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["channel", "account", "address"])
            .returning(Identity)
        )
        identity = (
            await self.session.scalars(stmt, execution_options={"populate_existing": True})
        ).first()
        if identity is None:
            # No savepoint (pysqlite's are unreliable): drop our orphan by hand.
            await self.session.execute(sa.delete(Customer).where(col(Customer.id) == customer_id))
        return identity

    async def _insert_customer(
        self, keys: dict[str, str], name: str | None, now: object
    ) -> int | None:
        stmt = (
            insert(self.session, Customer)
            .values(name=name, attributes={}, created_at=now, updated_at=now, **keys)
            .on_conflict_do_nothing()
            .returning(col(Customer.id))
        )
        return (await self.session.execute(stmt)).scalar()


def _address_keys(channel: str, address: str) -> dict[str, str]:
    """The customer key an address carries: a phone for SMS, an email for email."""
    try:
        if channel == Channel.sms:
            return {"phone": normalize_phone(address)}
        if channel == Channel.email:
            return {"email": normalize_email(address)}
    except ValueError:
        pass
    return {}


_IDENTITY: sa.Table = Identity.__table__  # type: ignore[attr-defined]
# Every inbound message asks: built once.
_WITH_CUSTOMER = (
    sa.select(Identity, Customer)
    .join(Customer, col(Customer.id) == col(Identity.customer_id))
    .where(
        col(Identity.channel) == sa.bindparam("channel"),
        col(Identity.account) == sa.bindparam("account"),
        col(Identity.address) == sa.bindparam("address"),
    )
    .execution_options(populate_existing=True)
)
