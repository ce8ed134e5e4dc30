"""Text as search terms, the way SQLite FTS5's `porter unicode61 remove_diacritics 2` sees it.

The MongoDB store cannot use MongoDB's `$text` (its stemmer and scoring differ from FTS5's, and
test servers lack it), so it stores each document's terms itself and ranks with FTS5's bm25
formula. For both stores to agree, the terms must be the ones FTS5 would index:

- `tokenize` splits on every character that is not a letter, a number or a private-use
  character (unicode61's default categories `L* N* Co`), folds case, and removes diacritics
  from Latin letters (`é` -> `e`), dropping the combining marks that FTS5 treats as diacritics;
- `index_terms` stems each token with `bot.memory.stemming.porter_stem` (FTS5's porter port);
- `query_terms` does the same to a query, drops stop words and duplicates.

Unicode versions differ: SQLite's tables are Unicode 6.1 and count every code point assigned
since as a token character, so a newer symbol (🙂 is Unicode 7) is a one-character token there and
a separator here. Such a token never matches a query (queries drop symbols in both stores), so
it only lengthens a document by one term in bm25. English, accented Latin, Greek, Cyrillic and
CJK text match exactly (`tests/test_text_terms.py` compares against sqlite3's fts5vocab).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from bot.memory.stemming import porter_stem

__all__ = [
    "BM25_B",
    "BM25_K1",
    "CONTEXT_CHARS",
    "CONTEXT_ROLES",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_WORDS",
    "STOP_WORDS",
    "TEXT_TERMS_VERSION",
    "bm25_idf",
    "index_terms",
    "message_contexts",
    "query_terms",
    "tokenize",
]

#: Bumped when the terms of a text change; a store re-indexes documents with an older version.
TEXT_TERMS_VERSION = 1

#: FTS5's bm25 constants.
BM25_K1 = 1.2
BM25_B = 0.75

#: Words too common to rank by; dropped from queries only (documents keep every term): NLTK's
#: English list (pronouns, auxiliaries, question words, contraction fragments) plus "would".
#: Questions put to recall ("What did she say about ...?") are mostly these; left in, they
#: match every message and drown the words that matter. The SQLite store uses this set too.
# fmt: off
STOP_WORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "ain", "all", "am", "an", "and", "any", "are", "aren",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can",
    "couldn", "d", "did", "didn", "do", "does", "doesn", "doing", "don", "down", "during", "each", "few", "for",
    "from", "further", "had", "hadn", "has", "hasn", "have", "haven", "having", "he", "her", "here", "hers",
    "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its", "itself",
    "just", "ll", "m", "ma", "me", "mightn", "more", "most", "mustn", "my", "myself", "needn", "no", "nor",
    "not", "now", "o", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out",
    "over", "own", "re", "s", "same", "shan", "she", "should", "shouldn", "so", "some", "such", "t", "than",
    "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "ve", "very", "was", "wasn", "we", "were", "weren", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "won", "would", "wouldn", "y",
    "you", "your", "yours", "yourself", "yourselves",
})
# fmt: on
#: Roles whose messages recall search reads; only they carry a context.
CONTEXT_ROLES = frozenset({"user", "assistant"})
#: Characters of the previous message a message is indexed with.
CONTEXT_CHARS = 1_000
#: Bounds on a query, as in the SQLite store.
MAX_QUERY_CHARS = 2_000
MAX_QUERY_WORDS = 32

# The combining marks FTS5's unicode61 removes as diacritics (with remove_diacritics 2); every
# other combining mark separates tokens, as in FTS5.
_DIACRITICS = frozenset(
    (
        *range(0x300, 0x305),
        *range(0x306, 0x30D),
        0x30F,
        0x311,
        0x31B,
        *range(0x323, 0x329),
        0x32D,
        0x32E,
        0x330,
        0x331,
    )
)


@lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """One token character as FTS5 stores it: case-folded, Latin diacritics removed ('' to drop)."""
    if ord(char) in _DIACRITICS:
        return ""
    folded = char.casefold()
    if len(folded) != 1:
        folded = char.lower() if len(char.lower()) == 1 else char
    if folded >= "\x80":
        decomposed = unicodedata.normalize("NFD", folded)
        if len(decomposed) > 1 and decomposed[0] < "\x80" and all(ord(c) in _DIACRITICS for c in decomposed[1:]):
            return decomposed[0].lower()
    return folded


@lru_cache(maxsize=4096)
def _is_token_char(char: str) -> bool:
    if ord(char) in _DIACRITICS:
        return True
    category = unicodedata.category(char)
    # Cn: characters unassigned in Python's tables were mostly unknown to SQLite's older ones too,
    # which treat them as token characters.
    return category[0] in "LN" or category in ("Co", "Cn")


def tokenize(text: str) -> list[str]:
    """FTS5 unicode61 (remove_diacritics 2) tokens of `text`, folded, unstemmed."""
    tokens: list[str] = []
    current: list[str] = []
    for char in text:
        if char.isascii():
            # Fast path for the common case; same result as the general one.
            if char.isalnum():
                current.append(char.lower())
                continue
        elif _is_token_char(char):
            current.append(_fold(char))
            continue
        if current:
            token = "".join(current)
            if token:
                tokens.append(token)
            current = []
    if current and (token := "".join(current)):
        tokens.append(token)
    return tokens


def index_terms(text: str | None) -> list[str]:
    """Every stemmed term of `text` in order, repeats kept (bm25 counts them)."""
    if not text:
        return []
    return [porter_stem(token) for token in tokenize(text)]


def query_terms(query: str) -> list[str]:
    """The stemmed terms of a query, one per distinct word, as the SQLite store's MATCH string has them.

    Words are split and deduplicated before stemming (`run running` is two terms that stem
    alike, so FTS5 counts `run` twice, and so does this); stop words are dropped.
    """
    words: dict[str, None] = {}
    word: list[str] = []
    for char in unicodedata.normalize("NFC", query[:MAX_QUERY_CHARS]) + " ":
        category = unicodedata.category(char)
        if category[0] in "LNM" or category == "Co":
            word.append(char)
            continue
        if word:
            lowered = "".join(word).lower()
            word.clear()
            if lowered not in STOP_WORDS:
                words.setdefault(lowered)
    # A word FTS5 would split further becomes a phrase there; here its parts count as terms.
    return [porter_stem(token) for w in list(words)[:MAX_QUERY_WORDS] for token in tokenize(w)]


def bm25_idf(n_docs: int, n_hits: int) -> float:
    """FTS5's inverse document frequency, floored at 1e-6 for terms in over half the documents."""
    idf = math.log((n_docs - n_hits + 0.5) / (n_hits + 0.5))
    return idf if idf > 0.0 else 1e-6


def message_contexts(previous: str | None, messages: Iterable[tuple[str, str]]) -> list[str | None]:
    """The context each of `messages` (role, content) is indexed with, after `previous` (the last
    earlier message of a `CONTEXT_ROLES` role with text, or None).

    A message of those roles with text is indexed with the text of the one before it (cut to
    `CONTEXT_CHARS`), weighted like the speaker's name: in a conversation a reply's meaning is
    partly in what it answers ("Yes, twice!" to "Have you been to Paris?"). Others get none.
    """
    contexts: list[str | None] = []
    for role, content in messages:
        if role in CONTEXT_ROLES and content:
            contexts.append(previous[:CONTEXT_CHARS] if previous else None)
            previous = content
        else:
            contexts.append(None)
    return contexts
