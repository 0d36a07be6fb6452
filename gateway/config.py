"""Settings: one typed object read from the environment, then `.env`, then defaults.

Every setting is named `CHATGATE_<NAME>`. A malformed value stops the process at
start with the setting's name, never half-way through serving traffic.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "load_settings"]


# The example flows that ship with chatgate, so `make run` has flows to run.
SHIPPED_FLOWS = Path(__file__).resolve().parent.parent / "flows" / "examples"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


# What each SMS provider cannot start without (make_sms_provider insists on the same).
_SMS_REQUIRED: dict[str, tuple[str, ...]] = {
    "kannel": ("kannel_url", "kannel_username", "kannel_password", "kannel_from"),
    "smsru": ("smsru_api_id",),
    "twilio": ("twilio_account_sid", "twilio_auth_token", "twilio_from"),
}


class Settings(BaseSettings):
    """Everything chatgate can be told, in one place."""

    model_config = SettingsConfigDict(
        env_prefix="CHATGATE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    database_url: str = "sqlite+aiosqlite:///./chatgate.db"
    redis_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None
    api_key: str | None = None
    default_region: str = "RU"
    timezone: str = "Europe/Moscow"
    log_json: bool = False
    log_level: str = "INFO"

    # The sandbox: local emulators of every channel; on by default when no tokens are set.
    sandbox: bool | None = None
    dialog_script: str | None = None  # path to a dialog YAML; the shipped shop script if unset
    # How long a continuation link (t.me/...?start=, vk.me/...?ref=, ...) stays valid.
    link_ttl_days: float = Field(7, gt=0)
    # The folder of flow YAML files (+ templates/); the shipped examples if unset.
    flows_dir: str = str(SHIPPED_FLOWS)
    # Flow sends: the customers' zone when theirs is unknown (the company's if unset),
    # quiet hours in the customer's zone, and marketing caps per customer across flows.
    default_timezone: str | None = None
    quiet_hours: str = "21:00-09:00"
    marketing_cap_day: int | None = Field(2, ge=0)
    marketing_cap_week: int | None = Field(5, ge=0)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_window(cls, value: str) -> str:
        from flows.quiet_hours import QuietHours

        QuietHours.parse(value)  # a ValueError names the expected form
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_default_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Moscow") from None
        return value

    telegram_token: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_secret: str | None = None
    telegram_rate_per_s: float = Field(30, gt=0)
    telegram_chat_rate_per_s: float = Field(1, gt=0)
    telegram_group_rate_per_min: float = Field(20, gt=0)

    # The managers' desk: a Telegram forum supergroup served by the same bot.
    managers_chat_id: int | None = None
    managers: str = ""  # comma-separated Telegram user ids; the group's admins count too
    manager_remind_after_s: float = Field(600, gt=0)  # nobody took a waiting conversation

    vk_token: str | None = None
    vk_group_id: int | None = None
    vk_api_url: str = "https://api.vk.com/method/"
    vk_mode: Literal["longpoll", "callback"] = "longpoll"
    vk_secret: str | None = None
    vk_confirmation: str | None = None
    vk_rate_per_s: float = Field(20, gt=0)

    # SMS: one provider per process; its webhook is /webhooks/sms/<provider>.
    sms_provider: Literal["kannel", "smsru", "twilio"] | None = None
    kannel_url: str | None = None  # the smsbox sendsms URL, .../cgi-bin/sendsms
    kannel_username: str | None = None
    kannel_password: str | None = None
    kannel_from: str | None = None
    kannel_dlr_mask: int = Field(19, ge=0)
    smsru_api_id: str | None = None
    smsru_from: str | None = None
    smsru_api_url: str = "https://sms.ru"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    sms_webhook_secret: str | None = None
    sms_max_segments: int = Field(6, ge=1)

    # Email: SMTP out through a relay, and/or a built-in SMTP receiver for the domain's MX.
    email_address: str | None = None  # the company's address, e.g. support@shop.example
    email_domain: str | None = None  # reply+/bounce+ addresses; the address's domain if unset
    email_secret: str | None = None  # signs VERP bounce addresses and unsubscribe links
    smtp_url: str | None = None  # smtp://, smtp+starttls:// or smtps://user:pass@host:port
    smtp_listen: str | None = None  # host:port for the built-in receiver
    imap_url: str | None = None  # imaps:// or imap:// (STARTTLS when offered) user:pass@host/INBOX
    imap_idle: bool = True  # IDLE where the server offers it; False: always poll
    imap_poll_interval_s: float = Field(60, gt=0)  # between polls when not idling
    email_tracking: bool = True  # open pixel and signed click redirects in outgoing mail

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a phone region code such as RU, US or DE")
        return region

    @field_validator("managers")
    @classmethod
    def _user_ids(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip() and not part.strip().lstrip("-").isdigit():
                raise ValueError(f"{part.strip()!r} is not a Telegram user id (digits)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Moscow") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith(("postgres://", "postgresql://")):
            # Operators paste libpq URLs; the store needs the asyncpg driver.
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return value

    @field_validator("vk_api_url")
    @classmethod
    def _method_base(cls, value: str) -> str:
        # Method names are appended to it, so it must end with a slash.
        return value if value.endswith("/") else value + "/"

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _sms_provider_complete(self) -> Settings:
        if self.sms_provider is not None:
            missing = [
                f"CHATGATE_{name.upper()}"
                for name in _SMS_REQUIRED[self.sms_provider]
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(
                    f"CHATGATE_SMS_PROVIDER={self.sms_provider} needs {', '.join(missing)}"
                )
        return self

    @model_validator(mode="after")
    def _email_complete(self) -> Settings:
        if self.smtp_url or self.smtp_listen or self.imap_url:
            missing = [
                f"CHATGATE_{name.upper()}"
                for name in ("email_address", "email_secret")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(
                    f"email (SMTP_URL / SMTP_LISTEN / IMAP_URL) needs {', '.join(missing)}"
                )
        if self.imap_url:
            from gateway.bridge.email.imap_client import parse_imap_url

            try:
                parse_imap_url(self.imap_url)
            except ValueError as exc:
                raise ValueError(f"CHATGATE_IMAP_URL: {exc}") from None
        if self.smtp_listen:
            host, _, port = self.smtp_listen.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("CHATGATE_SMTP_LISTEN must be host:port, e.g. 0.0.0.0:25")
        return self

    @property
    def mail_domain(self) -> str | None:
        """The domain of reply+/bounce+ addresses."""
        if self.email_domain:
            return self.email_domain.lower()
        if self.email_address and "@" in self.email_address:
            return self.email_address.rsplit("@", 1)[1].lower()
        return None

    @property
    def manager_ids(self) -> frozenset[int]:
        """CHATGATE_MANAGERS as numbers."""
        return frozenset(int(p) for p in self.managers.split(",") if p.strip())

    @cached_property
    def zone(self) -> ZoneInfo:
        """The company's own time zone (working hours, quiet hours default)."""
        return ZoneInfo(self.timezone)

    @property
    def base_url(self) -> str:
        """Where people and platforms reach this process."""
        return self.public_url or f"http://{self.http_host}:{self.http_port}"

    @property
    def sandbox_enabled(self) -> bool:
        """Emulators run when asked to, or by default when no channel has a token."""
        if self.sandbox is not None:
            return self.sandbox
        return self.telegram_token is None and self.vk_token is None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            if not error["loc"]:  # a check across settings names them itself
                lines.append(str(error["ctx"]["error"]) if "ctx" in error else error["msg"])
                continue
            name = "CHATGATE_" + "_".join(str(part) for part in error["loc"]).upper()
            lines.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
