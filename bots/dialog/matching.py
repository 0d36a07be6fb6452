"""Fuzzy matching of what a customer typed against known phrasings.

Stdlib only: normalise (case, ё→е, punctuation, Latin look-alikes inside
Cyrillic words), then score by weighted token overlap — tokens compared with
stem and typo tolerance, rarer tokens weighing more — or by the difflib ratio
of the whole strings, whichever is higher.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

__all__ = ["Matcher", "asks_for_person", "normalise", "tokens"]

_WORD = re.compile(r"[^\W_]+")
_CYRILLIC = re.compile(r"[а-я]")
_LATIN = re.compile(r"[a-z]")
# "доставкa" typed with a Latin "a": visual look-alikes only.
_LOOKALIKES = str.maketrans("aeopcxyk", "аеорсхук")
_STOP = frozenset(
    [
        "а",
        "и",
        "в",
        "во",
        "на",
        "по",
        "с",
        "со",
        "к",
        "ко",
        "у",
        "о",
        "об",
        "от",
        "до",
        "за",
        "из",
        "ли",
        "же",
        "бы",
        "ну",
        "мне",
        "меня",
        "мой",
        "моя",
        "мои",
        "мое",
        "мы",
        "я",
        "вы",
        "вас",
        "вам",
        "ваш",
        "ваши",
        "у",
        "это",
        "пожалуйста",
        "подскажите",
        "скажите",
        "a",
        "an",
        "the",
        "is",
        "are",
        "do",
        "does",
        "i",
        "my",
        "me",
        "you",
        "your",
        "to",
        "of",
        "in",
        "on",
        "for",
        "can",
        "please",
    ]
)

PERSON_WORDS = (
    "оператор", "менеджер", "человек", "живой человек", "позовите человека",
    "консультант", "operator", "manager", "human", "person", "agent", "real person",
)  # fmt: skip


# Words that also mean a count or a role in ordinary sentences.
AMBIGUOUS_PERSON_WORDS = frozenset({"человек", "person", "human", "agent"})
REQUEST_CUES = (
    "позовите", "позвать", "позови", "нужен", "нужна", "хочу", "дайте", "соедините",
    "свяжите", "живой", "живым", "talk", "speak", "want", "need", "connect", "real",
)  # fmt: skip


def normalise(text: str) -> str:
    """Lower case, ё→е, words only, Latin look-alikes fixed inside Cyrillic words."""
    words = []
    for word in _WORD.findall(text.lower().replace("ё", "е")):
        if _CYRILLIC.search(word) and _LATIN.search(word):
            word = word.translate(_LOOKALIKES)
        words.append(word)
    return " ".join(words)


def tokens(text: str) -> tuple[str, ...]:
    """Normalised words without the ones that carry no meaning here."""
    words = normalise(text).split()
    kept = tuple(w for w in words if w not in _STOP)
    return kept or tuple(words)


def _similar(a: str, b: str) -> float:
    """1 for the same word, ~0.9 for the same stem, the ratio for a typo, else 0."""
    if a == b:
        return 1.0
    if a.isdigit() or b.isdigit():
        return 0.0
    shorter = min(len(a), len(b))
    if shorter >= 4:
        prefix = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            prefix += 1
        if prefix >= 4 and prefix >= shorter - 2:  # доставка / доставки / доставку
            return 0.9
        ratio = SequenceMatcher(None, a, b).ratio()
        if ratio >= 0.75:
            return ratio
    return 0.0


def asks_for_person(text: str, extra: Iterable[str] = ()) -> bool:
    """Whether the customer asks for a human ("позовите оператора", "real person").

    "Человек" or "person" alone is a request only in a short message or next to a
    request ("позовите", "нужен", "talk to"): "на сколько человек этот торт?" is not.
    """
    words = normalise(text).split()
    for phrase in (*PERSON_WORDS, *extra):
        wanted = normalise(phrase).split()
        if not wanted or not all(any(_same_word(w, want) for w in words) for want in wanted):
            continue
        if wanted[0] not in AMBIGUOUS_PERSON_WORDS or len(wanted) > 1:
            return True
        if len(words) <= 2 or any(_same_word(w, cue) for w in words for cue in REQUEST_CUES):
            return True
    return False


def _same_word(word: str, wanted: str) -> bool:
    if word == wanted:
        return True
    if _CYRILLIC.search(wanted):  # Russian inflects: оператора, менеджеру, человека
        if word.startswith(wanted) and len(word) - len(wanted) <= 3:
            return True
    elif word == wanted + "s":
        return True
    return (  # a typo: "опреатор", not another word: "personal"
        len(wanted) >= 6
        and abs(len(word) - len(wanted)) <= 1
        and SequenceMatcher(None, word, wanted).ratio() >= 0.85
    )


@dataclass(frozen=True, slots=True)
class _Variant:
    target: str
    text: str
    tokens: tuple[str, ...]


class Matcher:
    """Finds which target a free-text message means, if any scores high enough."""

    def __init__(self, phrasings: Iterable[tuple[str, str]], threshold: float) -> None:
        self.threshold = threshold
        self._variants = [
            _Variant(target, normalise(text), tokens(text)) for target, text in phrasings
        ]
        targets: dict[str, set[str]] = {}
        for variant in self._variants:
            for token in variant.tokens:
                targets.setdefault(token, set()).add(variant.target)
        total = len({v.target for v in self._variants}) or 1
        self._weight = {t: math.log(1 + total / len(ts)) for t, ts in targets.items()}
        self._unknown = math.log(1 + total)

    def _weight_of(self, token: str) -> float:
        return self._weight.get(token, self._unknown)

    def _overlap(self, query: Sequence[str], variant: Sequence[str]) -> float:
        if not query or not variant:
            return 0.0
        found = sum(self._weight_of(v) * max(_similar(q, v) for q in query) for v in variant)
        recall = found / sum(self._weight_of(v) for v in variant)
        hit = sum(
            max((_similar(q, v) for v in variant), default=0.0) * self._weight_of(q) for q in query
        )
        precision = hit / sum(self._weight_of(q) for q in query)
        if not recall or not precision:
            return 0.0
        return 2 * recall * precision / (recall + precision)

    def score(self, text: str) -> list[tuple[float, str]]:
        """Every target with its best score, best first."""
        query_text, query = normalise(text), tokens(text)
        best: dict[str, float] = {}
        for variant in self._variants:
            whole = SequenceMatcher(None, query_text, variant.text).ratio()
            score = max(whole, self._overlap(query, variant.tokens))
            if score > best.get(variant.target, -1.0):
                best[variant.target] = score
        return sorted(((s, t) for t, s in best.items()), key=lambda st: -st[0])

    def match(self, text: str) -> str | None:
        """The target meant, or None when nothing scores at the threshold."""
        scores = self.score(text)
        if scores and scores[0][0] >= self.threshold:
            return scores[0][1]
        return None
