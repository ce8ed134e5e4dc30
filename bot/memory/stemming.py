"""The Porter stemmer exactly as SQLite FTS5's `porter` tokenizer applies it.

A byte-for-byte port of `fts5PorterCb` (sqlite/ext/fts5/fts5_tokenize.c): it works on the
UTF-8 bytes of one already case-folded token, stems only tokens of 3 to 64 bytes, and follows
FTS5's own quirks (Porter's reference departures `bli`->`ble` and `logi`->`log`, `y` counted as
a vowel after a consonant). Why a port rather than a package: the MongoDB store must index the
very terms the SQLite store's FTS5 index holds, so that both stores rank searches the same way.
`tests/test_text_terms.py` checks this module against sqlite3's fts5vocab.
"""

from __future__ import annotations

__all__ = ["porter_stem"]

_MAX_TOKEN = 64
_VOWELS = frozenset(b"aeiou")
_Y = ord("y")


def _is_vowel(c: int, *, is_y_vowel: bool) -> bool:
    return c in _VOWELS or (is_y_vowel and c == _Y)


def _gobble_vc(stem: bytes | bytearray, start: int, end: int, *, is_prev_consonant: bool) -> int:
    """Length from `start` to the end of the first vowel-then-consonant run, or 0 if there is none."""
    is_consonant = is_prev_consonant
    i = start
    while i < end:
        is_consonant = not _is_vowel(stem[i], is_y_vowel=is_consonant)
        if not is_consonant:
            break
        i += 1
    i += 1
    while i < end:
        is_consonant = not _is_vowel(stem[i], is_y_vowel=is_consonant)
        if is_consonant:
            return i + 1 - start
        i += 1
    return 0


def _m_gt0(stem: bytearray, n: int) -> bool:
    return _gobble_vc(stem, 0, n, is_prev_consonant=False) != 0


def _m_gt1(stem: bytearray, n: int) -> bool:
    first = _gobble_vc(stem, 0, n, is_prev_consonant=False)
    return first != 0 and _gobble_vc(stem, first, n, is_prev_consonant=True) != 0


def _m_eq1(stem: bytearray, n: int) -> bool:
    first = _gobble_vc(stem, 0, n, is_prev_consonant=False)
    return first != 0 and _gobble_vc(stem, first, n, is_prev_consonant=True) == 0


def _o_star(stem: bytearray, n: int) -> bool:
    """Ends consonant-vowel-consonant, the last not w, x or y."""
    if stem[n - 1] in b"wxy":
        return False
    mask = 0
    is_consonant = False
    for i in range(n):
        is_consonant = not _is_vowel(stem[i], is_y_vowel=is_consonant)
        mask = (mask << 1) + int(is_consonant)
    return (mask & 0x7) == 0x5


def _m_gt1_and_s_or_t(stem: bytearray, n: int) -> bool:
    return stem[n - 1] in b"st" and _m_gt1(stem, n)


def _has_vowel(stem: bytearray, n: int) -> bool:
    return any(_is_vowel(stem[i], is_y_vowel=i > 0) for i in range(n))


# (suffix, replacement, condition) per step, grouped by the suffix's second-to-last byte as
# FTS5's generated switch statements are: the first suffix that matches is the only one tried.
type _Condition = str
_STEP2: dict[int, tuple[tuple[bytes, bytes, _Condition], ...]] = {
    ord("a"): ((b"ational", b"ate", "m>0"), (b"tional", b"tion", "m>0")),
    ord("c"): ((b"enci", b"ence", "m>0"), (b"anci", b"ance", "m>0")),
    ord("e"): ((b"izer", b"ize", "m>0"),),
    ord("g"): ((b"logi", b"log", "m>0"),),
    ord("l"): (
        (b"bli", b"ble", "m>0"),
        (b"alli", b"al", "m>0"),
        (b"entli", b"ent", "m>0"),
        (b"eli", b"e", "m>0"),
        (b"ousli", b"ous", "m>0"),
    ),
    ord("o"): ((b"ization", b"ize", "m>0"), (b"ation", b"ate", "m>0"), (b"ator", b"ate", "m>0")),
    ord("s"): (
        (b"alism", b"al", "m>0"),
        (b"iveness", b"ive", "m>0"),
        (b"fulness", b"ful", "m>0"),
        (b"ousness", b"ous", "m>0"),
    ),
    ord("t"): ((b"aliti", b"al", "m>0"), (b"iviti", b"ive", "m>0"), (b"biliti", b"ble", "m>0")),
}
_STEP3: dict[int, tuple[tuple[bytes, bytes, _Condition], ...]] = {
    ord("a"): ((b"ical", b"ic", "m>0"),),
    ord("s"): ((b"ness", b"", "m>0"),),
    ord("t"): ((b"icate", b"ic", "m>0"), (b"iciti", b"ic", "m>0")),
    ord("u"): ((b"ful", b"", "m>0"),),
    ord("v"): ((b"ative", b"", "m>0"),),
    ord("z"): ((b"alize", b"al", "m>0"),),
}
_STEP4: dict[int, tuple[tuple[bytes, bytes, _Condition], ...]] = {
    ord("a"): ((b"al", b"", "m>1"),),
    ord("c"): ((b"ance", b"", "m>1"), (b"ence", b"", "m>1")),
    ord("e"): ((b"er", b"", "m>1"),),
    ord("i"): ((b"ic", b"", "m>1"),),
    ord("l"): ((b"able", b"", "m>1"), (b"ible", b"", "m>1")),
    ord("n"): ((b"ant", b"", "m>1"), (b"ement", b"", "m>1"), (b"ment", b"", "m>1"), (b"ent", b"", "m>1")),
    ord("o"): ((b"ion", b"", "m>1 and (*s or *t)"), (b"ou", b"", "m>1")),
    ord("s"): ((b"ism", b"", "m>1"),),
    ord("t"): ((b"ate", b"", "m>1"), (b"iti", b"", "m>1")),
    ord("u"): ((b"ous", b"", "m>1"),),
    ord("v"): ((b"ive", b"", "m>1"),),
    ord("z"): ((b"ize", b"", "m>1"),),
}
_CONDITIONS = {"m>0": _m_gt0, "m>1": _m_gt1, "m>1 and (*s or *t)": _m_gt1_and_s_or_t}


def _apply_rules(buf: bytearray, rules: dict[int, tuple[tuple[bytes, bytes, _Condition], ...]]) -> None:
    n = len(buf)
    for suffix, replacement, condition in rules.get(buf[n - 2], ()):
        if n > len(suffix) and buf.endswith(suffix):
            stem = n - len(suffix)
            if _CONDITIONS[condition](buf, stem):
                buf[stem:] = replacement
            return


def _step1a(buf: bytearray) -> None:
    n = len(buf)
    if buf[n - 1] != ord("s"):
        return
    if buf[n - 2] == ord("e"):
        if (n > 4 and buf[n - 4] == ord("s") and buf[n - 3] == ord("s")) or (n > 3 and buf[n - 3] == ord("i")):
            del buf[n - 2 :]  # sses -> ss, ies -> i
        else:
            del buf[n - 1 :]
    elif buf[n - 2] != ord("s"):
        del buf[n - 1 :]


def _step1b(buf: bytearray) -> bool:
    """eed -> ee, (*v*)ed -> '', (*v*)ing -> ''; True when ed/ing was removed."""
    n = len(buf)
    if n > 3 and buf.endswith(b"eed"):
        if _m_gt0(buf, n - 3):
            del buf[n - 1 :]
        return False
    if buf[n - 2] == ord("e") and n > 2 and buf.endswith(b"ed"):
        if _has_vowel(buf, n - 2):
            del buf[n - 2 :]
            return True
        return False
    if n > 3 and buf.endswith(b"ing") and _has_vowel(buf, n - 3):
        del buf[n - 3 :]
        return True
    return False


def _step1b2(buf: bytearray) -> bool:
    """at -> ate, bl -> ble, iz -> ize; True when one applied."""
    n = len(buf)
    if n > 2 and bytes(buf[n - 2 :]) in (b"at", b"bl", b"iz"):
        buf.append(ord("e"))
        return True
    return False


def porter_stem(token: str) -> str:
    """Stem one lower-cased token as FTS5's porter tokenizer does."""
    raw = token.encode("utf-8")
    if len(raw) > _MAX_TOKEN or len(raw) < 3:
        return token
    buf = bytearray(raw)
    _step1a(buf)
    if len(buf) >= 2 and _step1b(buf) and not _step1b2(buf) and buf:
        n = len(buf)
        last = buf[n - 1]
        if n >= 2 and not _is_vowel(last, is_y_vowel=False) and last not in b"lsz" and last == buf[n - 2]:
            del buf[n - 1 :]
        elif _m_eq1(buf, n) and _o_star(buf, n):
            buf.append(ord("e"))
    if buf and buf[-1] == _Y and _has_vowel(buf, len(buf) - 1):
        buf[-1] = ord("i")
    for rules in (_STEP2, _STEP3, _STEP4):
        if len(buf) >= 2:
            _apply_rules(buf, rules)
    n = len(buf)
    if n and buf[n - 1] == ord("e") and (_m_gt1(buf, n - 1) or (_m_eq1(buf, n - 1) and not _o_star(buf, n - 1))):
        del buf[n - 1 :]
    n = len(buf)
    if n > 1 and buf[n - 1] == ord("l") and buf[n - 2] == ord("l") and _m_gt1(buf, n - 1):
        del buf[n - 1 :]
    # Only ASCII suffixes are touched, but a cut can in theory split a multi-byte character.
    return buf.decode("utf-8", errors="replace")
