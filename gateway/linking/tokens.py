"""Proof tokens in the store: continuation-link tokens and one-time codes.

Only hashes are stored, so a leaked database holds no live token. A link token
is 128 random bits; a code is six digits, salted before hashing (two customers
may well be sent the same digits) and guarded by an attempt limit instead.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import LinkToken

__all__ = [
    "CODE_ATTEMPTS",
    "CODE_TTL",
    "CodeCheck",
    "Consumed",
    "LinkTokens",
    "TokenState",
    "new_code",
    "new_token",
]

LINK = "link"
CODE = "code"
CODE_TTL = timedelta(minutes=10)
CODE_ATTEMPTS = 5
# Channels whose addresses fold case (a reply+ mailbox) or where people retype
# what they see get lower-case hex; the messengers carry base64url unchanged.
HEX_CHANNELS = frozenset({"email", "sms"})
_SALT_CHARS = 16


class TokenState(enum.StrEnum):
    valid = "valid"
    used = "used"
    expired = "expired"
    unknown = "unknown"


@dataclass(frozen=True, slots=True)
class Consumed:
    """What following a link token proved: its customer, if it was live."""

    state: TokenState
    customer_id: int | None = None


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """A typed code against the customer's pending one."""

    state: TokenState  # valid (right code), unknown (wrong), used (no attempts left), expired
    token: LinkToken
    attempts_left: int = 0


def new_token(channel: str) -> str:
    """128 random bits, in the alphabet the channel carries intact."""
    if channel in HEX_CHANNELS:
        return secrets.token_hex(16)
    return secrets.token_urlsafe(16)


def new_code() -> str:
    """Six random digits."""
    return f"{secrets.randbelow(10**6):06d}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _code_hash(code: str, salt: str | None = None) -> str:
    """`salt` + 48 hex digits of SHA-256(salt:code): unique per row, 64 characters."""
    salt = salt or secrets.token_hex(_SALT_CHARS // 2)
    return salt + hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()[:48]


def _open_codes(customer_id: int) -> tuple[sa.ColumnElement[bool], ...]:
    """The customer's codes not yet used up (expired ones included: closed when checked)."""
    return (
        col(LinkToken.customer_id) == customer_id,
        col(LinkToken.purpose) == CODE,
        col(LinkToken.used_at).is_(None),
    )


class LinkTokens:
    """Link-token rows of one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def issue(self, customer_id: int, channel: str, *, now: datetime, ttl: timedelta) -> str:
        """A fresh single-use link token for `customer_id`, to be followed on `channel`."""
        token = new_token(channel)
        self.session.add(
            LinkToken(
                token_hash=_hash(token),
                customer_id=customer_id,
                purpose=LINK,
                channel=channel,
                expires_at=now + ttl,
                created_at=now,
            )
        )
        await self.session.flush()
        return token

    async def consume(self, token: str, *, now: datetime) -> Consumed:
        """Use the token up, atomically: only the first of two racing messages gets it."""
        digest = _hash(token)
        used = await self.session.execute(
            sa.update(LinkToken)
            .where(
                col(LinkToken.token_hash) == digest,
                col(LinkToken.purpose) == LINK,
                col(LinkToken.used_at).is_(None),
                col(LinkToken.expires_at) > now,
            )
            .values(used_at=now)
            .returning(col(LinkToken.customer_id))
            .execution_options(synchronize_session=False)
        )
        customer_id = used.scalar()
        if customer_id is not None:
            return Consumed(TokenState.valid, int(customer_id))
        row = await self.session.scalar(
            sa.select(LinkToken).where(
                col(LinkToken.token_hash) == digest, col(LinkToken.purpose) == LINK
            )
        )
        if row is None:
            return Consumed(TokenState.unknown)
        return Consumed(TokenState.used if row.used_at is not None else TokenState.expired)

    async def issue_code(
        self, customer_id: int, *, channel: str, address: str, now: datetime
    ) -> str:
        """A six-digit code to `address` on `channel`; earlier pending codes die."""
        await self.session.execute(
            sa.update(LinkToken)
            .where(*_open_codes(customer_id))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        code = new_code()
        self.session.add(
            LinkToken(
                token_hash=_code_hash(code),
                customer_id=customer_id,
                purpose=CODE,
                channel=channel,
                address=address,
                expires_at=now + CODE_TTL,
                created_at=now,
            )
        )
        await self.session.flush()
        return code

    async def codes_since(self, customer_id: int, since: datetime) -> int:
        """How many codes the customer was sent since `since` (a cap on SMS spending)."""
        found = await self.session.scalar(
            sa.select(sa.func.count())
            .select_from(LinkToken)
            .where(
                col(LinkToken.customer_id) == customer_id,
                col(LinkToken.purpose) == CODE,
                col(LinkToken.created_at) >= since,
            )
        )
        return int(found or 0)

    async def check_code(self, customer_id: int, typed: str, *, now: datetime) -> CodeCheck | None:
        """Check `typed` against the customer's open code; None when none is open.

        A wrong code counts an attempt; the fifth wrong one kills the code. An
        expired code is closed on sight, so it is reported once.
        """
        pending = await self.session.scalar(
            sa.select(LinkToken)
            .where(*_open_codes(customer_id))
            .order_by(col(LinkToken.id).desc())
            .limit(1)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if pending is None:
            return None
        if pending.expires_at <= now:
            pending.used_at = now
            await self.session.flush()
            return CodeCheck(TokenState.expired, pending)
        salt = pending.token_hash[:_SALT_CHARS]
        if hmac.compare_digest(_code_hash(typed, salt), pending.token_hash):
            pending.used_at = now
            await self.session.flush()
            return CodeCheck(TokenState.valid, pending)
        pending.attempts += 1
        left = CODE_ATTEMPTS - pending.attempts
        if left <= 0:
            pending.used_at = now
        await self.session.flush()
        return CodeCheck(TokenState.unknown if left > 0 else TokenState.used, pending, max(left, 0))
