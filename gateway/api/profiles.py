"""A stored customer as the API shows it: profile with tags, consents and identities."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.schemas import ConsentOut, CustomerOut, CustomerSummary, IdentityOut
from storage.customers import Customers
from storage.identities import Identities
from storage.models import Customer

__all__ = ["profile", "summary"]


async def summary(session: AsyncSession, customer: Customer) -> CustomerSummary:
    assert customer.id is not None
    return CustomerSummary(
        id=customer.id,
        external_id=customer.external_id,
        name=customer.name,
        phone=customer.phone,
        email=customer.email,
        timezone=customer.timezone,
        locale=customer.locale,
        tags=await Customers(session).tags(customer.id),
        created_at=customer.created_at,
        updated_at=customer.updated_at,
    )


async def profile(session: AsyncSession, customer: Customer) -> CustomerOut:
    assert customer.id is not None
    consents = await Customers(session).consents(customer.id)
    identities = await Identities(session).for_customer(customer.id)
    return CustomerOut(
        **(await summary(session, customer)).model_dump(),
        attributes=customer.attributes,
        erased_at=customer.erased_at,
        consents=[
            ConsentOut(
                channel=c.channel,
                purpose=c.purpose,
                granted=c.granted,
                source=c.source,
                updated_at=c.updated_at,
            )
            for c in consents
        ],
        identities=[
            IdentityOut(
                id=i.id or 0,
                channel=i.channel,
                account=i.account,
                address=i.address,
                display_name=i.display_name,
                username=i.username,
                verified=i.verified,
                reachable=i.reachable,
                last_seen_at=i.last_seen_at,
            )
            for i in identities
        ],
    )
