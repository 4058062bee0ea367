"""Pure-Python twin of ``erv_plugins._native``: the reference the native code must match.

Paper mode uses the authors' release regexes verbatim (see /work/shared/REFERENCE.md and the
docs). Pragmatic mode is spelled out here as plain Python; ``rust/src/pragmatic.rs`` follows
it step for step, and the test suite runs both on the same cases and on generated text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The release's regexes.
FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>")  # not DOTALL, as released
PAPER_SPLIT_RE = re.compile(r'(?<=[\.!?])\s+(?=(?:[^"]*"[^"]*")*[^"]*$)')


@dataclass(frozen=True, slots=True)
class Parsed:
    """What the rewards need from one completion.

    ``format_ok``: the whole completion matches ``<think>.*?</think>\\s*<answer>.*?</answer>``.
    ``think``: the first ``<think>...</think>`` (across lines), stripped; None if absent.
    ``answer``: the first ``<answer>...</answer>`` on one line, stripped; None if absent.
    """

    format_ok: bool
    think: str | None
    answer: str | None


def parse_completions(texts: list[str]) -> list[Parsed]:
    out = []
    for text in texts:
        think = THINK_RE.search(text)
        answer = ANSWER_RE.search(text)
        out.append(Parsed(
            format_ok=FORMAT_RE.fullmatch(text) is not None,
            think=think.group(1).strip() if think else None,
            answer=answer.group(1).strip() if answer else None,
        ))
    return out


def split_paper(text: str) -> list[str]:
    """Algorithm 1's sentence split, as released: whitespace after . ! ? outside quotes."""
    return [s for s in PAPER_SPLIT_RE.split(text) if s]


# --- pragmatic mode -------------------------------------------------------------------------
# Word lists (ASCII, lower case; the native module carries the same lists, a test compares).
TITLES = frozenset("""adm brig capt cmdr col det dr fr gen gov hon insp lt maj messrs mlle mme
    mr mrs ms mt pres prof rep rev sen sgt st supt""".split())
NEVER_END = frozenset("al approx ca cf e.g esp i.e incl resp viz vs w.r.t".split())
NUMBER_ABBR = frozenset("art ch eq eqs fig figs no nos nr op p pp sec tab vol vols".split())
SOMETIMES_END = frozenset("""a.m apr aug ave b.a b.sc blvd bros co corp dec dept e.u est feb
    fri hr hrs inc jan jr jul jun llc ltd m.a m.d mar min mon nov oct p.m ph.d plc rd sat sep
    sept sr sun thu thur thurs tue tues u.k u.n u.s u.s.a univ wed""".split())
STARTERS = frozenset("""A Additionally After Afterwards Again All Also Although An And Another
    Are As At Based Because Before Both But By Can Clearly Could Despite Did Do Does During
    Each Even Everyone Finally First For From Furthermore Given He Her Here His How However I
    If In Indeed Instead Is It Its Later Let Many Maybe Meanwhile Moreover Most My Next No
    Nobody Nothing Now Once One Only Other Our Overall Perhaps She Since So Some Someone Still
    Such That The Their Then There Therefore These They This Those Though Thus To Today We
    Were What When Where Which While Who Why With Yes Yet You Your""".split())

_LINE_BREAKS = frozenset("\n\r\x85\u2028\u2029")
_TERMINATORS = frozenset(".!?\u2026")
_CLOSERS = frozenset("\"')]\u201d\u2019\u00bb")
_OPENERS = frozenset("\"'([\u201c\u2018\u00bf\u00a1")
_OPENERS_STR = "".join(sorted(_OPENERS))
_DOTTED_RE = re.compile(r"[A-Za-z]{1,2}(?:\.[A-Za-z]{1,2})+")
_LETTERS_RE = re.compile(r"[A-Za-z]*")
_LIST_MARKER_RE = re.compile(r"[a-z][.)](?:\s|\Z)")  # "b. next item", "c) next item"
_MAX_WORD_BYTES = 64


def _is_upper(c: str) -> bool:
    """Upper case letters we judge by: ASCII, Latin-1, basic Greek and Cyrillic (a fixed set,
    so that Python's and Rust's Unicode tables never disagree)."""
    o = ord(c)
    return 0x41 <= o <= 0x5A or 0xC0 <= o <= 0xDE and o != 0xD7 or 0x391 <= o <= 0x3A9 \
        or 0x410 <= o <= 0x42F


def _is_lower(c: str) -> bool:
    o = ord(c)
    return 0x61 <= o <= 0x7A or 0xDF <= o <= 0xFF and o != 0xF7 or 0x3B1 <= o <= 0x3C9 \
        or 0x430 <= o <= 0x44F


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def split_pragmatic(text: str) -> list[str]:
    """English sentences of ``text``, stripped; the rules are in ``rust/src/pragmatic.rs``.

    Line breaks always end a sentence. A terminator cluster (``. ! ? …``) with its closing
    quotes/brackets ends one when whitespace follows and the next word is not lower case
    (unless it is a list marker ``b.``/``b)``) (and
    is not another terminator, as in ``. . .``), or when a Capitalised word follows with no space
    (``happy.The``) outside URLs and e-mail addresses. A lone ``.`` is judged by the word before
    it (``_period_ends``).
    """
    out: list[str] = []
    n = len(text)
    last_cut = 0
    tok_start = 0  # after the last whitespace, or the last cut

    def emit(to: int) -> None:
        piece = text[last_cut:to].strip()
        if piece:
            out.append(piece)

    i = 0
    while i < n:
        ch = text[i]
        if ch.isspace():
            if ch in _LINE_BREAKS:
                emit(i)
                last_cut = i
            i += 1
            tok_start = i
            continue
        if ch not in _TERMINATORS:
            i += 1
            continue
        c = i
        while c < n and text[c] in _TERMINATORS:
            c += 1
        d = c
        while d < n and text[d] in _CLOSERS:
            d += 1
        if _cluster_ends(text, i, c, d, tok_start, last_cut):
            emit(d)
            last_cut = tok_start = d
        i = d
    emit(n)
    return out


def _cluster_ends(text: str, i: int, c: int, d: int, tok_start: int, last_cut: int) -> bool:
    n = len(text)
    if d >= n:
        return True
    w = d
    while w < n and text[w].isspace():
        w += 1
    if w >= n:
        return True
    single_dot = c - i == 1 and text[i] == "."
    if w == d:  # no space: only before a Capitalised word, and never inside a URL or address
        if not (_is_upper(text[d]) and d + 1 < n and _is_lower(text[d + 1])):
            return False
        a = i
        while a > 0 and not text[a - 1].isspace():
            a -= 1
        b = i
        while b < n and not text[b].isspace():
            b += 1
        token = text[a:b]
        if "@" in token or "://" in token or "www." in token:
            return False
        return not single_dot or _period_ends(text, i, text[d], d, tok_start, last_cut)
    if text[w] in _TERMINATORS:  # a spaced ellipsis ". . ." goes on
        return False
    k = w
    while k < n and text[k] in _OPENERS:
        k += 1
    nx = text[k] if k < n else ""
    if nx and _is_lower(nx) and not _LIST_MARKER_RE.match(text, k):
        return False
    return not single_dot or _period_ends(text, i, nx, k, tok_start, last_cut)


def _period_ends(text: str, i: int, nx: str, k: int, tok_start: int, last_cut: int) -> bool:
    """Whether the lone ``.`` at ``i`` ends a sentence; the next word starts with ``nx`` at ``k``."""
    raw = text[tok_start:i]
    if _utf8_len(raw) > _MAX_WORD_BYTES:
        return True
    word = raw.lstrip(_OPENERS_STR)
    if not word:
        return True
    before = text[last_cut:tok_start]
    first_word = before == "" or before.isspace()
    if first_word and (len(word) <= 2 and all(ch in "0123456789" for ch in word)
                       or len(word) == 1 and word.isascii() and word.isalpha()):
        return False  # a list marker: "1. Frown", "b. Tears"
    if not word.isascii():
        return True
    lw = word.lower()
    if "A" <= word[0] <= "Z" and lw in TITLES:
        return False
    if lw in NEVER_END:
        return False
    if lw in NUMBER_ABBR and "0" <= nx <= "9" and nx != "":
        return False
    if lw in SOMETIMES_END or (len(word) == 1 and "A" <= word <= "Z") or _DOTTED_RE.fullmatch(word):
        next_word = _LETTERS_RE.match(text, k)
        return next_word is not None and next_word.group() in STARTERS
    return True


def split_sentences_batch(texts: list[str], mode: str) -> list[list[str]]:
    if mode == "paper":
        return [split_paper(t) for t in texts]
    if mode == "pragmatic":
        return [split_pragmatic(t) for t in texts]
    raise ValueError(f"unknown segmentation mode {mode!r}; expected 'paper' or 'pragmatic'")


def parse_and_split(texts: list[str], mode: str) -> tuple[list[Parsed], list[list[str]]]:
    parsed = parse_completions(texts)
    return parsed, split_sentences_batch([p.think or "" for p in parsed], mode)
