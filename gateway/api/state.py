"""What the API's handlers read from their application: typed keys, no globals."""

from __future__ import annotations

from aiohttp import web

from gateway.linking import Linker
from storage.db import Database

__all__ = ["API_APP", "API_KEY", "DATABASE", "LINKER", "REGION"]

DATABASE = web.AppKey("chatgate_api_database", Database)
API_KEY = web.AppKey("chatgate_api_key", str)
# The region phone numbers without a country code are read in ("RU": 8 999 … is +7 999 …).
REGION = web.AppKey("chatgate_api_region", str)
# The parent application keeps its API sub-application here, for tests and tools.
API_APP = web.AppKey("chatgate_api_app", web.Application)
# Issues continuation links; the composition root sets it once the channels are known.
LINKER = web.AppKey("chatgate_api_linker", Linker)
