"""Linking channels, only on proof: continuation links, contact button, one-time codes.

`Linker` issues single-use tokens and codes and, called by the router inside the
transaction that stores an inbound message, attaches the message's identity to
the customer it proves, merging the two customers when both have history.
"""

from __future__ import annotations

from gateway.linking.linker import LINK_TTL, CodeOffer, Linked, Linker, Texts
from gateway.linking.links import ContinuationChannels, token_in_text

__all__ = [
    "LINK_TTL",
    "CodeOffer",
    "ContinuationChannels",
    "Linked",
    "Linker",
    "Texts",
    "token_in_text",
]
