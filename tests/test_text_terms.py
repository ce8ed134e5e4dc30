"""The MongoDB store's search terms against SQLite FTS5's own tokenizer (sqlite3's fts5vocab)."""

from __future__ import annotations

import random
import sqlite3

import pytest

from bot.memory.stemming import porter_stem
from bot.memory.text_terms import STOP_WORDS, index_terms, query_terms, tokenize


def words(text: str) -> list[str]:
    return text.split()


ENGLISH = words(
    "caresses ponies ties caress cats feed agreed plastered bled motoring sing conflated troubled sized hopping "
    "tanned falling hissing fizzed failing filing happy sky relational conditional rational valenci hesitanci "
    "digitizer conformabli radicalli differentli vileli analogousli vietnamization predication operator "
    "feudalism decisiveness hopefulness callousness formaliti sensitiviti sensibiliti triplicate formative "
    "formalize electriciti electrical hopeful goodness revival allowance inference airliner gyroscopic "
    "adjustable defensible irritant replacement adjustment dependent adoption homologou communism activate "
    "angulariti homologous effective bowdlerize probate rate cease controll roll running runs ran runner "
    "generalizations oscillators remembering remembered birthdays meetings universities organization "
    "argument arguing argued agreement happily happiness studies studying studied flies flying dying lying "
    "generously generous national nationality international internationalization connect connected connecting "
    "connection connections fishing fished fisher fish yesterday tomorrow saying says said bye eye eyes a an ox "
    "is as us i by my be me we he ring rings sled logical biology apology apologies abilities ability"
)


def fts5_terms(texts: list[str], tokenizer: str) -> list[list[str]]:
    """The terms FTS5 stores for each text, in order."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{tokenizer}')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        conn.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", list(enumerate(texts, start=1)))
        found: dict[int, list[tuple[int, str]]] = {}
        for term, doc, _col, offset in conn.execute("SELECT term, doc, col, offset FROM v"):
            found.setdefault(doc, []).append((offset, term))
    finally:
        conn.close()
    return [[term for _, term in sorted(found.get(i, []))] for i in range(1, len(texts) + 1)]


def test_porter_stem_matches_fts5_on_english_words() -> None:
    expected = fts5_terms(ENGLISH, "porter ascii")
    assert [[porter_stem(w)] for w in ENGLISH] == expected


def test_porter_stem_matches_fts5_on_words_built_from_every_suffix_rule() -> None:
    suffixes = words(
        "ational tional enci anci izer logi bli alli entli eli ousli ization ation ator alism iveness fulness "
        "ousness aliti iviti biliti ical ness icate iciti ful ative alize al ance ence er ic able ible ant ement "
        "ment ent ion sion tion ou ism ate iti ous ive ize s es sses ies ss eed ed ing at bl iz y e ll ying ly"
    )
    rnd = random.Random(20240601)
    letters = "aeiouybcdfghjklmnprstvwxz"
    built = sorted(
        {
            "".join(rnd.choice(letters) for _ in range(rnd.randint(0, 6)))
            + rnd.choice(suffixes)
            + rnd.choice(("", *suffixes))
            for _ in range(4000)
        }
    )
    got = [[porter_stem(w)] for w in built]
    mismatches = [(w, g, e) for w, g, e in zip(built, got, fts5_terms(built, "porter ascii"), strict=True) if g != e]
    assert mismatches == []


@pytest.mark.parametrize(
    "text",
    [
        "Hello, World! It's 2024-06-01 and we're running late...",
        "Café naïve façade résumé Ærøskøbing Øresund straße İstanbul",
        "cafe\u0301s and cre\u0300me bru\u0302le\u0301e (decomposed accents)",
        "snake_case kebab-case CamelCase e-mail user@example.com https://example.com/a?b=c",
        "日本語のテキスト 中文 한국어 Ελληνικά Русский текст",
        "emoji 😀 between 🚀words and ™ symbols © ½",  # emoji of Unicode <= 6.1 (see text_terms)
        "MIXED case WORDS Running RUNS",
    ],
)
def test_index_terms_match_fts5_porter_unicode61(text: str) -> None:
    assert index_terms(text) == fts5_terms([text], "porter unicode61 remove_diacritics 2")[0]


def test_latin_letters_fold_as_fts5_does() -> None:
    # Every letter of Latin-1 and Latin Extended-A, alone between two ASCII letters.
    texts = [f"q{chr(c)}z" for c in range(0xC0, 0x180) if chr(c).isalpha()]
    assert [tokenize(t) for t in texts] == fts5_terms(texts, "unicode61 remove_diacritics 2")


def test_query_terms_drop_stop_words_and_keep_one_term_per_distinct_word() -> None:
    assert query_terms("The cat and THE dog") == ["cat", "dog"]
    # `run` and `running` are two words of the MATCH string: FTS5 scores both, so both stay.
    assert query_terms("Running run running") == ["run", "run"]
    assert query_terms("!!! ... the of") == []


def test_stop_words_are_the_sqlite_stores() -> None:
    sqlite_schema = pytest.importorskip("bot.memory.sqlite.schema")
    assert sqlite_schema._STOP_WORDS == STOP_WORDS
