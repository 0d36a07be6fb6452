"""Telling people from machines: mail proxies and link scanners open and click too.

Apple Mail Privacy Protection, Gmail's and Yahoo's image proxies fetch every
pixel; Safe Links, Proofpoint, Mimecast and Barracuda follow every link, most
within seconds of delivery. Their hits are kept, flagged as machine, so they
never count as engagement.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

__all__ = ["MACHINE_AGENTS", "is_machine", "machine_agent"]

MACHINE_AGENTS = re.compile(
    "|".join(
        [
            r"googleimageproxy",
            r"yahoomailproxy",
            r"^microsoft office",  # Outlook's prefetch and link preview
            r"ms-?office",
            r"barracuda",
            r"proofpoint",
            r"mimecast",
            r"symantec",
            r"messagelabs",
            r"safelinks",
            r"(?<!cu)bot",  # Googlebot, TelegramBot, ...; not Cubot phones
            r"vkshare",  # VK's link preview
            r"externalhit",  # Facebook's link preview
            r"spider",
            r"crawl",
            r"scan",
            r"headless",
            r"phantomjs",
            r"curl/",
            r"wget/",
            r"python-",
            r"aiohttp",
            r"httpx",
            r"go-http-client",
            r"java/",
            r"okhttp",
            r"libwww",
            r"httpclient",
        ]
    ),
    re.IGNORECASE,
)
# Apple's MPP proxy sends exactly this and nothing more; a real browser never does.
_APPLE_PROXY = "Mozilla/5.0"


def machine_agent(user_agent: str | None) -> bool:
    """Whether a User-Agent is a mail proxy, a link scanner, a script or missing."""
    agent = (user_agent or "").strip()
    if not agent or agent == _APPLE_PROXY:
        return True
    return MACHINE_AGENTS.search(agent) is not None


def is_machine(
    *,
    user_agent: str | None,
    method: str,
    now: datetime,
    sent_at: datetime | None,
    window: timedelta,
) -> bool:
    """A hit is a machine's when a scanner asks, it only peeks (HEAD), or it is too quick.

    A hit on a delivery not yet marked sent came before the send was even
    recorded: quicker than any person.
    """
    if method.upper() == "HEAD" or machine_agent(user_agent):
        return True
    return sent_at is None or now - sent_at < window
