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
# Word lists (ASCII; the native module carries the same lists, a test compares).
TITLES = frozenset("""adm brig capt cmdr col det dr fr gen gov hon insp lt maj messrs mlle mme
    mr mrs ms mt pres prof rep rev sen sgt st supt""".split())
NEVER_END = frozenset("al approx ca cf e.g esp i.e incl resp viz vs w.r.t".split())
NUMBER_ABBR = frozenset("art ch eq eqs fig figs no nos nr op p pp sec tab vol vols".split())
SOMETIMES_END = frozenset("""a.m apr aug ave b.a b.sc blvd bros co corp dec dept e.u est feb
    fri hr hrs inc jan jr jul jun llc ltd m.a m.d mar min mon nov oct p.m ph.d plc rd sat sep
    sept sr sun thu thur thurs tue tues u.k u.n u.s u.s.a univ wed""".split())
STARTERS = frozenset("""A Additionally After Afterwards Again All Also Although An And Another
    Are As At Based Because Before Both But By Can Clearly Could Despite Did Do Does During
    Each Even Everyone Finally First For From Furthermore Given Had Has Have He Her Here His How
    However I If In Indeed Instead Is It Its Later Let Many Maybe Meanwhile Moreover Most Must
    My Next No Nobody Nothing Now Once One Only Other Our Overall Perhaps Shall She Should Since
    So Some Someone Still Such That The Their Then There Therefore These They This Those Though
    Thus To Today Was We Were What When Where Which While Who Why Will With Would Yes Yet You
    Your""".split())
# After a clock time ("9 a.m."), a capitalised word that is no sentence starter goes on the
# sentence when it qualifies the time (a day, a month, a time zone) or when the sentence so far
# only frames the time ("In the evening at 7 p.m. Tom ..."; sentencex's trailing markers).
TIME_QUALIFIERS = frozenset("""Monday Tuesday Wednesday Thursday Friday Saturday Sunday January
    February March April June July August September October November December UTC GMT EST EDT
    CST CDT MST MDT PST PDT CET CEST BST IST JST""".split())
FRONTING = frozenset("""about after afternoon and approximately around at before by dawn day
    each early evening every exactly from in just last late morning next night noon on or
    precisely roughly shortly since sometime that the then this till today tomorrow tonight
    until yesterday monday tuesday wednesday thursday friday saturday sunday""".split())
# Names spelled with "!" (pySBD's exclamation words): the "!" ends a sentence only before a
# usual sentence opener.
EXCLAMATION_WORDS = frozenset("Jeopardy Yahoo".split())

_LINE_BREAKS = frozenset("\n\r\x85\u2028\u2029")
_TERMINATORS = frozenset(".!?\u2026")
_CLOSERS = frozenset("\"')]\u201d\u2019\u00bb")
_OPENERS = frozenset("\"'([\u201c\u2018\u00bf\u00a1")
_OPENERS_STR = "".join(sorted(_OPENERS))
_BULLETS = frozenset("\u2022\u2043-")  # bullet, hyphen bullet, hyphen-minus
_DOTTED_RE = re.compile(r"[A-Za-z]{1,2}(?:\.[A-Za-z]{1,2})+")
_LETTERS_RE = re.compile(r"[A-Za-z]*")
_CLOCK_RE = re.compile(r"[0-9]{1,2}(?::[0-9]{2})?")
_REF_CHARS = frozenset("0123456789,- \u2013")
_MAX_WORD_BYTES = 64
_MAX_FRONTING_WORDS = 8

# A list marker: (start, bullet, kind, sep, value, dot) with bullet one of _BULLETS or "", kind
# "num" (1-2 digits), "alpha" (one lower-case letter), "roman" (2-4 of i, v, x) or "" (a bullet
# alone), sep ".", ")", ".)" or "", value the number (letters count from 0) and dot the index
# of its "." (-1 if none).
Marker = tuple[int, str, str, str, int, int]


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


def _is_ascii_letter(c: str) -> bool:
    return "a" <= c <= "z" or "A" <= c <= "Z"


def _is_inline_space(c: str) -> bool:
    return c.isspace() and c not in _LINE_BREAKS


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def split_pragmatic(text: str) -> list[str]:
    """English sentences of ``text``, stripped; the rules are in ``rust/src/pragmatic.rs``.

    Line breaks always end a sentence. A terminator cluster (``. ! ? …``) with its closing
    quotes/brackets, and a spaced run of clusters such as ``. . .``, ends one when whitespace
    follows and the next word is not lower case (unless it is the next item of the list the
    sentence opens with), or when a Capitalised word follows with no space (``happy.The``)
    outside URLs, e-mail addresses and dot-coded tokens (``7.Bg5``). A lone ``.`` is judged by
    the word before it (``_period_ends``). A sentence that opens with a list marker (``1.``,
    ``2)``, ``a.``, ``• 3.``, ``-``) also ends before the next marker of the same list written on
    the same line (``1) The face 2) The voice``).
    """
    out: list[str] = []
    n = len(text)
    last_cut = 0
    tok_start = 0  # after the last whitespace, or the last cut
    marker = _opening_marker(text, 0)

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
                marker = _opening_marker(text, i + 1)
            i += 1
            tok_start = i
            continue
        if marker is not None and i > marker[0] and text[i - 1].isspace() and (
                ch in _BULLETS or "0" <= ch <= "9" or "a" <= ch <= "z"):
            m = _marker_at(text, i)
            if m is not None and _continues(marker, m):  # "1) The face 2) The voice"
                emit(i)
                last_cut = tok_start = i
                marker = m
        if ch not in _TERMINATORS:
            i += 1
            continue
        clusters = [_cluster(text, i)]
        e = clusters[0][2]
        while True:  # a spaced run ". . ." is one unit
            w = e
            while w < n and _is_inline_space(text[w]):
                w += 1
            if w == e or w >= n or text[w] not in _TERMINATORS:
                break
            clusters.append(_cluster(text, w))
            e = clusters[-1][2]
        e = _after_references(text, e)
        cut = _unit_cut(text, clusters, e, tok_start, last_cut, marker)
        if cut >= 0:
            emit(cut)
            last_cut = tok_start = cut
            marker = _opening_marker(text, cut)
        for p in range(e - 1, i - 1, -1):  # the unit may hold whitespace
            if text[p].isspace():
                tok_start = max(tok_start, p + 1)
                break
        i = e
    emit(n)
    return out


def _cluster(text: str, i: int) -> tuple[int, int, int]:
    """(start, end of terminators, end of closers) of the terminator cluster at ``i``."""
    n = len(text)
    c = i
    while c < n and text[c] in _TERMINATORS:
        c += 1
    d = c
    while d < n and text[d] in _CLOSERS:
        d += 1
    return i, c, d


def _after_references(text: str, e: int) -> int:
    """End of the reference marks (``[3]``, ``[4][5]``, `` [2–9]``) right after a unit at
    ``e``, when whitespace or the end follows them; else ``e``. They go with the sentence
    before (sentencex's numbered references)."""
    n = len(text)
    r = end = e
    while True:
        s = r + 1 if r < n and _is_inline_space(text[r]) else r
        if s >= n or text[s] != "[" or s + 1 >= n or not "0" <= text[s + 1] <= "9":
            break
        t = s + 1
        while t < n and t - s <= 16 and text[t] in _REF_CHARS:
            t += 1
        if t >= n or text[t] != "]":
            break
        r = end = t + 1
    if end > e and (end == n or text[end].isspace()):
        return end
    return e


def _is_ellipsis(terms: str) -> bool:
    return set(terms) <= {".", "\u2026"} and ("\u2026" in terms or terms.count(".") >= 3)


def _unit_cut(text: str, clusters: list[tuple[int, int, int]], e: int, tok_start: int,
              last_cut: int, marker: Marker | None) -> int:
    """Where the unit of ``clusters`` (ending at ``e``) ends a sentence, or -1 if it does not."""
    n = len(text)
    i, c, d = clusters[0]
    if e >= n:
        return e
    w = e
    while w < n and text[w].isspace():
        w += 1
    if w >= n:
        return e
    single = len(clusters) == 1
    single_dot = single and c - i == 1 and text[i] == "."
    if w == e:  # no space: only before a Capitalised word, never in URLs, addresses, "7.Bg5"
        if not (_is_upper(text[e]) and e + 1 < n and _is_lower(text[e + 1])):
            return -1
        if single_dot and i > 0 and "0" <= text[i - 1] <= "9":
            return -1
        a = i
        while a > 0 and not text[a - 1].isspace():
            a -= 1
        b = i
        while b < n and not text[b].isspace():
            b += 1
        token = text[a:b]
        if "@" in token or "://" in token or "www." in token:
            return -1
        if single_dot and not _period_ends(text, i, text[e], e, tok_start, last_cut, marker):
            return -1
        return e
    if text[w] in _TERMINATORS:  # only across a line break, which ends the sentence anyway
        return -1
    k = w
    while k < n and text[k] in _OPENERS:
        k += 1
    nx = text[k] if k < n else ""
    if single and i > 0 and _is_ellipsis(text[i:c]) and c < n and \
            (text[i - 1], text[c]) in (("[", "]"), ("(", ")")):
        return -1  # an omission "[...]"
    if nx and _is_lower(nx):
        m = _marker_at(text, k) if marker is not None else None
        if m is None or not _continues(marker, m):  # type: ignore[arg-type]
            return -1
    terms = "".join(text[a:b] for a, b, _ in clusters)
    if nx == "I" and _is_ellipsis(terms) and not (k + 1 < n and _is_ascii_letter(text[k + 1])):
        return -1  # ". . . I didn't mean it" goes on (golden rule 47)
    if len(clusters) >= 4 and c - i == 1 and d == c and text[i] == "." and i > 0 \
            and not text[i - 1].isspace() and all(b - a == 1 and text[a] == "." for a, b, _ in clusters[1:]) \
            and nx and _is_upper(nx) and _period_ends(text, i, nx, k, tok_start, last_cut, marker):
        return d  # "compounds. . . . The practice": the period ends it, ". . ." opens the next
    if single and c - i == 1 and text[i] == "!":
        word = text[tok_start:i].lstrip(_OPENERS_STR)
        if word in EXCLAMATION_WORDS:
            next_word = _LETTERS_RE.match(text, k)
            return e if next_word is not None and next_word.group() in STARTERS else -1
        return e
    if single_dot and not _period_ends(text, i, nx, k, tok_start, last_cut, marker):
        return -1
    return e


def _period_ends(text: str, i: int, nx: str, k: int, tok_start: int, last_cut: int,
                 marker: Marker | None) -> bool:
    """Whether the lone ``.`` at ``i`` ends a sentence; the next word starts with ``nx`` at ``k``."""
    if marker is not None and marker[5] == i:
        return False  # the "." of the list marker that opens the sentence
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
    if word in ("N\u00b0", "N\u00ba") and "0" <= nx <= "9" and nx != "":
        return False  # "N°. 5"
    if not word.isascii():
        return True
    lw = word.lower()
    if "A" <= word[0] <= "Z" and lw in TITLES:
        return False
    if lw in NEVER_END:
        return False
    if lw in NUMBER_ABBR and "0" <= nx <= "9" and nx != "":
        return False
    next_word = _LETTERS_RE.match(text, k)
    nw = next_word.group() if next_word is not None else ""
    if lw in ("a.m", "p.m"):
        clock = _clock_before(text, tok_start, last_cut)
        if clock >= 0:
            if nw in STARTERS:
                return True
            return nw not in TIME_QUALIFIERS and not _fronting(text, last_cut, clock)
    if word in ("N", "S", "E", "W") and _after_degrees(text, tok_start, last_cut):
        return True  # "2.35° E. It is"
    if lw in SOMETIMES_END or (len(word) == 1 and "A" <= word <= "Z") or _DOTTED_RE.fullmatch(word):
        return nw in STARTERS
    return True


def _clock_before(text: str, tok_start: int, last_cut: int) -> int:
    """Start of the clock time ("9", "10:30") right before the token at ``tok_start``, or -1."""
    p = tok_start
    while p > last_cut and text[p - 1].isspace():
        p -= 1
    if p == tok_start:
        return -1
    q = p
    while q > last_cut and p - q < 6 and text[q - 1] in "0123456789:":
        q -= 1
    if q > last_cut and not text[q - 1].isspace():
        return -1
    return q if _CLOCK_RE.fullmatch(text, q, p) else -1


def _fronting(text: str, last_cut: int, end: int) -> bool:
    """Whether the sentence before ``end`` holds only words that frame a time ("In the
    evening at"), at most ``_MAX_FRONTING_WORDS`` of them."""
    words = 0
    p = end
    while True:
        while p > last_cut and text[p - 1].isspace():
            p -= 1
        if p == last_cut:
            return True
        q = p
        while q > last_cut and not text[q - 1].isspace():
            q -= 1
        words += 1
        w = text[q:p].rstrip(",")
        if words > _MAX_FRONTING_WORDS or not w.isascii() or w.lower() not in FRONTING:
            return False
        p = q


def _after_degrees(text: str, tok_start: int, last_cut: int) -> bool:
    p = tok_start
    while p > last_cut and text[p - 1].isspace():
        p -= 1
    return last_cut < p < tok_start and text[p - 1] in "\u00b0\u2032\u2033"


def _opening_marker(text: str, p: int) -> Marker | None:
    """The list marker the sentence starting at ``p`` (after spaces) opens with, if any."""
    n = len(text)
    while p < n and _is_inline_space(text[p]):
        p += 1
    if p >= n or text[p] in _LINE_BREAKS:
        return None
    return _marker_at(text, p)


def _marker_at(text: str, p: int) -> Marker | None:
    """A list marker at ``p``: ``1.``, ``2)``, ``3.)``, ``b.``, ``ii.``, a bullet alone
    (``•``, ``⁃``, ``-`` before a word that is not lower case), or a bullet before one of
    those (``• 9.``, ``⁃9.``); markers end in whitespace or the end of the text."""
    n = len(text)
    if p >= n:
        return None
    if text[p] in _BULLETS:
        bullet = text[p]
        q = p + 1
        if q < n and _is_inline_space(text[q]):
            while q < n and _is_inline_space(text[q]):
                q += 1
            item = _item_marker(text, q)
            if item is not None:
                return (p, bullet, *item)
            if bullet == "-" and q < n and _is_lower(text[q]):
                return None  # a dash in prose: "a bad mood - angry"
            return (p, bullet, "", "", 0, -1)
        item = _item_marker(text, q)
        return None if item is None else (p, bullet, *item)
    item = _item_marker(text, p)
    return None if item is None else (p, "", *item)


def _item_marker(text: str, q: int) -> tuple[str, str, int, int] | None:
    """(kind, sep, value, dot) of a numbered, lettered or roman marker at ``q``."""
    n = len(text)
    j = q
    while j < n and j - q < 3 and "0" <= text[j] <= "9":
        j += 1
    if 1 <= j - q <= 2:
        kind, value = "num", int(text[q:j])
    elif j > q:
        return None
    else:
        while j < n and j - q < 5 and text[j] in "ivx":
            j += 1
        if 2 <= j - q <= 4:
            kind, value = "roman", -1
        elif q < n and "a" <= text[q] <= "z":
            kind, value, j = "alpha", ord(text[q]) - 0x61, q + 1
        else:
            return None
    if text.startswith(".)", j):
        sep, dot, end = ".)", j, j + 2
    elif j < n and text[j] == ".":
        sep, dot, end = ".", j, j + 1
    elif j < n and text[j] == ")":
        sep, dot, end = ")", -1, j + 1
    else:
        return None
    if end < n and not text[end].isspace():
        return None
    return kind, sep, value, dot


def _continues(cur: Marker, m: Marker) -> bool:
    """Whether ``m`` is the next item of the list ``cur`` opened: same bullet and form, and the
    next number or letter (any bullet alone follows a bullet alone)."""
    if m[1:4] != cur[1:4]:
        return False
    return cur[2] == "" or cur[2] in ("num", "alpha") and m[4] == cur[4] + 1


def split_sentences_batch(texts: list[str], mode: str) -> list[list[str]]:
    if mode == "paper":
        return [split_paper(t) for t in texts]
    if mode == "pragmatic":
        return [split_pragmatic(t) for t in texts]
    raise ValueError(f"unknown segmentation mode {mode!r}; expected 'paper' or 'pragmatic'")


def parse_and_split(texts: list[str], mode: str) -> tuple[list[Parsed], list[list[str]]]:
    parsed = parse_completions(texts)
    return parsed, split_sentences_batch([p.think or "" for p in parsed], mode)


def split_unique(texts: list[str], mode: str) -> tuple[list[str], list[int], list[int]]:
    """The sentences of a batch, each distinct one once: (distinct sentences in order of first
    occurrence, index into them of every sentence in order, number of sentences per text)."""
    index: dict[str, int] = {}
    ids: list[int] = []
    counts: list[int] = []
    for sentences in split_sentences_batch(texts, mode):
        counts.append(len(sentences))
        ids.extend(index.setdefault(s, len(index)) for s in sentences)
    return list(index), ids, counts


def parse_and_split_unique(texts: list[str], mode: str
                           ) -> tuple[list[Parsed], list[str], list[int], list[int]]:
    parsed = parse_completions(texts)
    return (parsed, *split_unique([p.think or "" for p in parsed], mode))
