"""A typo-tolerant keyword match over catalog text: normalised words compared by character
trigrams, so that "granny smth" still meets "Granny Smith" and "tropic" meets "Tropicana".

Normalisation: Unicode NFKD with accents dropped, case-folded, every run of characters that is
not a letter or digit becomes a word break ("Arla-Standard-Milk" -> arla standard milk).
Two words are compared by the Dice coefficient of their padded trigrams ("  ar", " arl", ...),
which forgives one typo in a word of five letters or more and rewards a shared prefix (a
shortened word); a query word meets each item by its best word there, a title word counting
fully and a description word at DESCRIPTION_WEIGHT. An item's keyword score is the mean over
the query's words, in [0, 1].
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict

import numpy as np

# A word in the description is weaker evidence than one in the title.
DESCRIPTION_WEIGHT = 0.6
# Below this trigram similarity two words are taken as different words (not a typo).
MIN_WORD_SIMILARITY = 0.3
# A shortened word ("tropic" for "tropicana") scores at least this against the word it starts.
PREFIX_SIMILARITY = 0.85
PREFIX_MIN_CHARS = 3
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalise(text: str) -> list[str]:
    """The words of `text`: accents dropped, case-folded, split on anything not a letter/digit."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return [w for w in _NON_WORD.split(plain) if w]


def trigrams(word: str) -> set[str]:
    padded = f"  {word} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


class KeywordIndex:
    """Postings from trigrams to words and from words to items; built once per catalog state."""

    def __init__(self, titles: list[str], descriptions: list[str]) -> None:
        if len(titles) != len(descriptions):
            raise ValueError("one description per title")
        self.size = len(titles)
        self._words: list[str] = []
        self._word_ids: dict[str, int] = {}
        self._grams: list[int] = []
        self._by_gram: dict[str, list[int]] = defaultdict(list)
        # word id -> {item row: weight}, the best field the word appears in for that item
        postings: dict[int, dict[int, float]] = defaultdict(dict)
        for row, (title, description) in enumerate(zip(titles, descriptions, strict=True)):
            for words, weight in ((normalise(description), DESCRIPTION_WEIGHT), (normalise(title), 1.0)):
                for word in words:
                    word_id = self._word_id(word)
                    if postings[word_id].get(row, 0.0) < weight:
                        postings[word_id][row] = weight
        self._items = {w: (np.fromiter(p.keys(), dtype=np.int64), np.fromiter(p.values(), dtype=np.float32))
                       for w, p in postings.items()}

    def _word_id(self, word: str) -> int:
        word_id = self._word_ids.get(word)
        if word_id is None:
            word_id = self._word_ids[word] = len(self._words)
            self._words.append(word)
            grams = trigrams(word)
            self._grams.append(len(grams))
            for gram in grams:
                self._by_gram[gram].append(word_id)
        return word_id

    def similar_words(self, word: str) -> dict[int, float]:
        """Catalog words like `word` (word id -> similarity in [MIN_WORD_SIMILARITY, 1])."""
        grams = trigrams(word)
        shared = Counter(w for gram in grams for w in self._by_gram.get(gram, ()))
        out: dict[int, float] = {}
        for word_id, common in shared.items():
            similarity = 2.0 * common / (len(grams) + self._grams[word_id])
            candidate = self._words[word_id]
            if len(word) >= PREFIX_MIN_CHARS and candidate.startswith(word) and candidate != word:
                similarity = max(similarity, PREFIX_SIMILARITY)
            if similarity >= MIN_WORD_SIMILARITY:
                out[word_id] = similarity
        return out

    def scores(self, query: str) -> np.ndarray:
        """(size,) float32 keyword score of every item for `query`, in [0, 1]."""
        words = normalise(query)
        total = np.zeros(self.size, dtype=np.float32)
        if not words or self.size == 0:
            return total
        for word in words:
            best = np.zeros(self.size, dtype=np.float32)
            for word_id, similarity in self.similar_words(word).items():
                rows, weights = self._items[word_id]
                np.maximum.at(best, rows, weights * np.float32(similarity))
            total += best
        return total / len(words)
