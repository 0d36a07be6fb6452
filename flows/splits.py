"""A/B/n splits: which variant a customer gets, the same everywhere and forever.

Deterministic from flow and customer alone (no stored random draw), so every
process and every restart agrees, and the holdout share is exact enough to
measure lift against.
"""

from __future__ import annotations

import hashlib

from flows.spec import Split

__all__ = ["split_variant"]


def split_variant(flow_name: str, customer_id: int, split: Split) -> str | None:
    """The customer's variant, the same on every process and restart; None: holdout.

    One hash of flow and customer decides both: its low part against the holdout
    percentage, its high part against the variants' weights.
    """
    digest = hashlib.sha256(f"{flow_name}:{customer_id}".encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    if number % 10000 < split.holdout * 100:
        return None
    total = sum(split.variants.values())
    point = (number // 10000) % total
    for name, weight in split.variants.items():
        if point < weight:
            return name
        point -= weight
    raise AssertionError("unreachable: the weights add up to total")
