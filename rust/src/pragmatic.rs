//! Pragmatic mode: rule-based English sentence segmentation for model explanations.
//!
//! The rules (mirrored exactly by `_text_pure.split_pragmatic`, which is the readable spec):
//! * every line break (\n \r \x85 U+2028 U+2029) ends a sentence;
//! * a cluster of terminators (`.` `!` `?` `…`) plus closing quotes/brackets, and a run of such
//!   clusters separated by spaces (`. . .`), is one unit, followed by any reference marks
//!   (`.[3]`, `. [2]`); with whitespace after it, it ends a sentence unless the next word
//!   starts lowercase (other than the next item of the list the sentence opens with), an
//!   ellipsis is followed by the pronoun `I` (golden rule 47) or the unit is an omission
//!   (`[...]`); a word-attached `.` before a spaced ellipsis and a capital ends the sentence
//!   there, the ellipsis opening the next one (`compounds. . . . The`). Without whitespace, only
//!   when a Capitalised word follows directly (`happy.The`) and the token is no URL, e-mail or
//!   dot code (`7.Bg5`);
//! * a single `.` after a word is judged by that word: list markers (`1.` `a.` opening a
//!   sentence), titles (`Dr.`), abbreviations that never end a sentence (`e.g.`), ones before
//!   numbers (`No. 5`, `N°. 5`), a.m./p.m. after a clock time (they end it before a usual
//!   opener, and before another capitalised word unless that word is a day, month or time zone
//!   or the sentence so far only frames the time: `In the evening at 7 p.m. Tom`), compass
//!   points after degrees, and ones that may end a sentence (`U.S.`, initials `J.`), which do
//!   when the next word is a usual sentence opener (`The`, `He`, ...). `etc.` is an ordinary
//!   word: it ends a sentence before any capital. A `!` after `Yahoo` ends one only before an
//!   opener;
//! * a sentence that opens with a list marker (`1.` `2)` `3.)` `b.` `ii.` `•` `⁃` `-`, or a
//!   bullet before a number: `• 9.`, `⁃9.`) also ends right before the next marker of the same
//!   list (same bullet and form, next number or letter) later on its line: `1) The face 2) The
//!   voice`.
//!
//! Positions are byte offsets in UTF-8 (surrogates allowed); everything that depends on
//! length is defined in UTF-8 bytes so that the Python twin can compute the same.
use crate::ws::{decode, decode_before, strip, ws_len, ws_len_before};

pub const TITLES: &[&str] = &[
    "adm", "brig", "capt", "cmdr", "col", "det", "dr", "fr", "gen", "gov", "hon", "insp", "lt",
    "maj", "messrs", "mlle", "mme", "mr", "mrs", "ms", "mt", "pres", "prof", "rep", "rev", "sen",
    "sgt", "st", "supt",
];
pub const NEVER_END: &[&str] = &[
    "al", "approx", "ca", "cf", "e.g", "esp", "i.e", "incl", "resp", "viz", "vs", "w.r.t",
];
pub const NUMBER_ABBR: &[&str] = &[
    "art", "ch", "eq", "eqs", "fig", "figs", "no", "nos", "nr", "op", "p", "pp", "sec", "tab",
    "vol", "vols",
];
pub const SOMETIMES_END: &[&str] = &[
    "a.m", "apr", "aug", "ave", "b.a", "b.sc", "blvd", "bros", "co", "corp", "dec", "dept", "e.u",
    "est", "feb", "fri", "hr", "hrs", "inc", "jan", "jr", "jul", "jun", "llc", "ltd", "m.a", "m.d",
    "mar", "min", "mon", "nov", "oct", "p.m", "ph.d", "plc", "rd", "sat", "sep", "sept", "sr",
    "sun", "thu", "thur", "thurs", "tue", "tues", "u.k", "u.n", "u.s", "u.s.a", "univ", "wed",
];
pub const STARTERS: &[&str] = &[
    "A",
    "Additionally",
    "After",
    "Afterwards",
    "Again",
    "All",
    "Also",
    "Although",
    "An",
    "And",
    "Another",
    "Are",
    "As",
    "At",
    "Based",
    "Because",
    "Before",
    "Both",
    "But",
    "By",
    "Can",
    "Clearly",
    "Could",
    "Despite",
    "Did",
    "Do",
    "Does",
    "During",
    "Each",
    "Even",
    "Everyone",
    "Finally",
    "First",
    "For",
    "From",
    "Furthermore",
    "Given",
    "Had",
    "Has",
    "Have",
    "He",
    "Her",
    "Here",
    "His",
    "How",
    "However",
    "I",
    "If",
    "In",
    "Indeed",
    "Instead",
    "Is",
    "It",
    "Its",
    "Later",
    "Let",
    "Many",
    "Maybe",
    "Meanwhile",
    "Moreover",
    "Most",
    "Must",
    "My",
    "Next",
    "No",
    "Nobody",
    "Nothing",
    "Now",
    "Once",
    "One",
    "Only",
    "Other",
    "Our",
    "Overall",
    "Perhaps",
    "Shall",
    "She",
    "Should",
    "Since",
    "So",
    "Some",
    "Someone",
    "Still",
    "Such",
    "That",
    "The",
    "Their",
    "Then",
    "There",
    "Therefore",
    "These",
    "They",
    "This",
    "Those",
    "Though",
    "Thus",
    "To",
    "Today",
    "Was",
    "We",
    "Were",
    "What",
    "When",
    "Where",
    "Which",
    "While",
    "Who",
    "Why",
    "Will",
    "With",
    "Would",
    "Yes",
    "Yet",
    "You",
    "Your",
];
/// Capitalised words that qualify a clock time (`9 a.m. Monday`, `9 a.m. EST`).
pub const TIME_QUALIFIERS: &[&str] = &[
    "April",
    "August",
    "BST",
    "CDT",
    "CEST",
    "CET",
    "CST",
    "December",
    "EDT",
    "EST",
    "February",
    "Friday",
    "GMT",
    "IST",
    "JST",
    "January",
    "July",
    "June",
    "MDT",
    "MST",
    "March",
    "Monday",
    "November",
    "October",
    "PDT",
    "PST",
    "Saturday",
    "September",
    "Sunday",
    "Thursday",
    "Tuesday",
    "UTC",
    "Wednesday",
];
/// Words that only frame a time (`In the evening at 7 p.m. Tom ...`), lower case.
pub const FRONTING: &[&str] = &[
    "about",
    "after",
    "afternoon",
    "and",
    "approximately",
    "around",
    "at",
    "before",
    "by",
    "dawn",
    "day",
    "each",
    "early",
    "evening",
    "every",
    "exactly",
    "friday",
    "from",
    "in",
    "just",
    "last",
    "late",
    "monday",
    "morning",
    "next",
    "night",
    "noon",
    "on",
    "or",
    "precisely",
    "roughly",
    "saturday",
    "shortly",
    "since",
    "sometime",
    "sunday",
    "that",
    "the",
    "then",
    "this",
    "thursday",
    "till",
    "today",
    "tomorrow",
    "tonight",
    "tuesday",
    "until",
    "wednesday",
    "yesterday",
];
/// Names spelled with `!` (pySBD's exclamation words).
pub const EXCLAMATION_WORDS: &[&str] = &["Jeopardy", "Yahoo"];
const MAX_WORD_BYTES: usize = 64;
const MAX_STARTER_LEN: usize = 16;
const MAX_FRONTING_WORDS: usize = 8;
const NONE: usize = usize::MAX;

#[inline]
fn is_lb(c: u32) -> bool {
    matches!(c, 0x0A | 0x0D | 0x85 | 0x2028 | 0x2029)
}
#[inline]
fn is_term(c: u32) -> bool {
    matches!(c, 0x2E | 0x21 | 0x3F | 0x2026)
}
#[inline]
fn is_closer(c: u32) -> bool {
    matches!(c, 0x22 | 0x27 | 0x29 | 0x5D | 0x201D | 0x2019 | 0xBB)
}
#[inline]
fn is_opener(c: u32) -> bool {
    matches!(c, 0x22 | 0x27 | 0x28 | 0x5B | 0x201C | 0x2018 | 0xBF | 0xA1)
}
/// Bullet, hyphen bullet, hyphen-minus.
#[inline]
fn is_bullet(c: u32) -> bool {
    matches!(c, 0x2022 | 0x2043 | 0x2D)
}
/// Upper case letters we judge by: ASCII, Latin-1, basic Greek and Cyrillic (a fixed set, so
/// that Rust's and Python's Unicode tables never disagree).
#[inline]
pub fn is_upper(c: u32) -> bool {
    matches!(c, 0x41..=0x5A | 0xC0..=0xD6 | 0xD8..=0xDE | 0x391..=0x3A9 | 0x410..=0x42F)
}
#[inline]
pub fn is_lower(c: u32) -> bool {
    matches!(c, 0x61..=0x7A | 0xDF..=0xF6 | 0xF8..=0xFF | 0x3B1..=0x3C9 | 0x430..=0x44F)
}

/// Byte length of the whitespace character at `i` unless it is a line break; else 0.
#[inline]
fn inline_ws_len(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(&c) if c < 0x80 => return (c != b'\n' && c != b'\r') as usize * ws_len(b, i),
        None => return 0,
        _ => {}
    }
    let l = ws_len(b, i);
    if l > 0 && is_lb(decode(b, i).0) {
        0
    } else {
        l
    }
}

/// A word of at most 15 bytes packed with its length into one integer, so that list lookups
/// are integer compares (slice compares through memcmp dominated the profile).
#[inline]
fn key(w: &[u8]) -> Option<u128> {
    if w.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..w.len()].copy_from_slice(w);
    buf[15] = w.len() as u8;
    Some(u128::from_le_bytes(buf))
}

/// `key` of the ASCII-lowercased word.
#[inline(always)]
fn key_lower(w: &[u8]) -> Option<u128> {
    let k = key(w)?;
    let mut buf = k.to_le_bytes();
    for c in &mut buf[..15] {
        c.make_ascii_lowercase();
    }
    Some(u128::from_le_bytes(buf))
}

struct Lists {
    titles: Vec<u128>,
    never_end: Vec<u128>,
    number_abbr: Vec<u128>,
    sometimes_end: Vec<u128>,
    starters: Vec<u128>,
    time_qualifiers: Vec<u128>,
    fronting: Vec<u128>,
    exclamation_words: Vec<u128>,
}

fn lists() -> &'static Lists {
    static L: std::sync::OnceLock<Lists> = std::sync::OnceLock::new();
    L.get_or_init(|| {
        let k = |l: &[&str]| {
            let mut v: Vec<u128> = l
                .iter()
                .map(|w| key(w.as_bytes()).expect("list words are short"))
                .collect();
            v.sort_unstable();
            v
        };
        Lists {
            titles: k(TITLES),
            never_end: k(NEVER_END),
            number_abbr: k(NUMBER_ABBR),
            sometimes_end: k(SOMETIMES_END),
            starters: k(STARTERS),
            time_qualifiers: k(TIME_QUALIFIERS),
            fronting: k(FRONTING),
            exclamation_words: k(EXCLAMATION_WORDS),
        }
    })
}

#[inline]
fn in_list(list: &[u128], k: Option<u128>) -> bool {
    k.is_some_and(|k| list.binary_search(&k).is_ok())
}

/// `[A-Za-z]{1,2}(\.[A-Za-z]{1,2})+`, e.g. `U.S`, `Ph.D`.
fn dotted(w: &[u8]) -> bool {
    let mut parts = 0;
    for part in w.split(|&c| c == b'.') {
        if part.is_empty() || part.len() > 2 || !part.iter().all(u8::is_ascii_alphabetic) {
            return false;
        }
        parts += 1;
    }
    parts >= 2
}

/// `[0-9]{1,2}(:[0-9]{2})?`, a clock time.
fn clock(w: &[u8]) -> bool {
    match w {
        [a] | [a, _] if w.iter().all(u8::is_ascii_digit) => a.is_ascii_digit(),
        [h @ .., b':', m1, m2] if (1..=2).contains(&h.len()) => {
            h.iter().all(u8::is_ascii_digit) && m1.is_ascii_digit() && m2.is_ascii_digit()
        }
        _ => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A bullet alone (`• text`).
    Bullet,
    Num,
    Alpha,
    Roman,
}

/// A list marker at `start`: its bullet (0 if none), kind, separator (0 none, 1 `.`, 2 `)`,
/// 3 `.)`), value (the number; letters count from 0) and the offset of its `.` (NONE if none).
#[derive(Clone, Copy, Debug)]
struct Marker {
    start: usize,
    bullet: u32,
    kind: Kind,
    sep: u8,
    value: i64,
    dot: usize,
}

impl Marker {
    /// Whether `m` is the next item of the list this marker opened.
    fn continued_by(&self, m: &Marker) -> bool {
        if (m.bullet, m.kind, m.sep) != (self.bullet, self.kind, self.sep) {
            return false;
        }
        match self.kind {
            Kind::Bullet => true,
            Kind::Num | Kind::Alpha => m.value == self.value + 1,
            Kind::Roman => false,
        }
    }
}

/// (kind, sep, value, dot) of a numbered, lettered or roman marker at `q`, which must end in
/// whitespace or the end of the text.
fn item_marker(b: &[u8], q: usize) -> Option<(Kind, u8, i64, usize)> {
    let n = b.len();
    let mut j = q;
    while j < n && j - q < 3 && b[j].is_ascii_digit() {
        j += 1;
    }
    let (kind, value);
    if (1..=2).contains(&(j - q)) {
        kind = Kind::Num;
        value = b[q..j]
            .iter()
            .fold(0i64, |v, &c| v * 10 + (c - b'0') as i64);
    } else if j > q {
        return None;
    } else {
        while j < n && j - q < 5 && matches!(b[j], b'i' | b'v' | b'x') {
            j += 1;
        }
        if (2..=4).contains(&(j - q)) {
            kind = Kind::Roman;
            value = -1;
        } else if q < n && b[q].is_ascii_lowercase() {
            kind = Kind::Alpha;
            value = (b[q] - b'a') as i64;
            j = q + 1;
        } else {
            return None;
        }
    }
    let (sep, dot, end) = if b[j..].starts_with(b".)") {
        (3, j, j + 2)
    } else if b.get(j) == Some(&b'.') {
        (1, j, j + 1)
    } else if b.get(j) == Some(&b')') {
        (2, NONE, j + 1)
    } else {
        return None;
    };
    if end < n && ws_len(b, end) == 0 {
        return None;
    }
    Some((kind, sep, value, dot))
}

/// A list marker at `p` (see `_text_pure._marker_at`).
#[inline]
fn marker_at(b: &[u8], p: usize) -> Option<Marker> {
    let n = b.len();
    // Every marker starts with a digit, a lower-case letter, `-` or a bullet (lead byte 0xE2).
    if p >= n
        || !(b[p].is_ascii_digit() || b[p].is_ascii_lowercase() || matches!(b[p], b'-' | 0xE2))
    {
        return None;
    }
    let mk = |bullet, (kind, sep, value, dot)| Marker {
        start: p,
        bullet,
        kind,
        sep,
        value,
        dot,
    };
    let (x, xl) = decode(b, p);
    if is_bullet(x) {
        let mut q = p + xl;
        if inline_ws_len(b, q) > 0 {
            loop {
                let l = inline_ws_len(b, q);
                if l == 0 {
                    break;
                }
                q += l;
            }
            if let Some(item) = item_marker(b, q) {
                return Some(mk(x, item));
            }
            if x == 0x2D && q < n && is_lower(decode(b, q).0) {
                return None; // a dash in prose: "a bad mood - angry"
            }
            return Some(mk(x, (Kind::Bullet, 0, 0, NONE)));
        }
        return item_marker(b, q).map(|item| mk(x, item));
    }
    item_marker(b, p).map(|item| mk(0, item))
}

/// The list marker the sentence starting at `p` (after spaces) opens with, if any.
#[inline]
fn opening_marker(b: &[u8], mut p: usize) -> Option<Marker> {
    while p < b.len() && b[p] == b' ' {
        p += 1;
    }
    // Most sentences open with a capital: no marker (see the first check of `marker_at`).
    if p < b.len() && b[p].is_ascii_uppercase() {
        return None;
    }
    loop {
        let l = inline_ws_len(b, p);
        if l == 0 {
            break;
        }
        p += l;
    }
    if p >= b.len() || is_lb(decode(b, p).0) {
        return None;
    }
    marker_at(b, p)
}

/// End of the reference marks (`[3]`, `[4][5]`, ` [2–9]`) right after a unit at `e`, when
/// whitespace or the end follows them; else `e`. Bracket contents are counted in characters.
fn after_references(b: &[u8], e: usize) -> usize {
    let n = b.len();
    let (mut r, mut end) = (e, e);
    loop {
        let s = r + inline_ws_len(b, r);
        if s >= n || b[s] != b'[' || s + 1 >= n || !b[s + 1].is_ascii_digit() {
            break;
        }
        let (mut t, mut chars) = (s + 1, 1);
        while t < n && chars <= 16 {
            let (x, xl) = decode(b, t);
            if !(matches!(x, 0x30..=0x39 | 0x2C | 0x2D | 0x20 | 0x2013)) {
                break;
            }
            t += xl;
            chars += 1;
        }
        if t >= n || b[t] != b']' {
            break;
        }
        r = t + 1;
        end = r;
    }
    if end > e && (end == n || ws_len(b, end) > 0) {
        end
    } else {
        e
    }
}

/// Bytes the scan stops at: terminators, ASCII line breaks, `)` and `-` (list markers), and
/// the lead bytes of U+0085, U+2022 (•), U+2026 (…), U+2028, U+2029 and U+2043 (⁃).
/// Everything else is skipped one byte per step.
const fn stop_table() -> [bool; 256] {
    let mut t = [false; 256];
    t[b'.' as usize] = true;
    t[b'!' as usize] = true;
    t[b'?' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[b')' as usize] = true;
    t[b'-' as usize] = true;
    t[0xC2] = true;
    t[0xE2] = true;
    t
}
static STOP: [bool; 256] = stop_table();

/// Whether a terminator starts at `i` (ASCII answered without decoding).
#[inline]
fn term_at(b: &[u8], i: usize) -> bool {
    match b[i] {
        b'.' | b'!' | b'?' => true,
        0xE2 => decode(b, i).0 == 0x2026,
        _ => false,
    }
}

/// End of the terminators and end of the closers of the cluster starting at `i`.
#[inline]
fn cluster(b: &[u8], i: usize) -> (usize, usize) {
    let n = b.len();
    let mut c = i;
    while c < n && b[c] < 0x80 {
        if !matches!(b[c], b'.' | b'!' | b'?') {
            break;
        }
        c += 1;
    }
    while c < n {
        let (y, yl) = decode(b, c);
        if !is_term(y) {
            break;
        }
        c += yl;
    }
    let mut d = c;
    while d < n {
        let (y, yl) = decode(b, d);
        if !is_closer(y) {
            break;
        }
        d += yl;
    }
    (c, d)
}

/// What counts of the terminators of a unit: `.` and `…` only, with three dots or a `…`.
#[derive(Default)]
struct Terms {
    dots: usize,
    ellipsis_char: bool,
    other: bool,
}

impl Terms {
    #[inline]
    fn add(&mut self, b: &[u8], mut a: usize, c: usize) {
        if c - a == 1 {
            // one ASCII terminator
            match b[a] {
                b'.' => self.dots += 1,
                _ => self.other = true,
            }
            return;
        }
        while a < c {
            let (y, yl) = decode(b, a);
            match y {
                0x2E => self.dots += 1,
                0x2026 => self.ellipsis_char = true,
                _ => self.other = true,
            }
            a += yl;
        }
    }

    fn ellipsis(&self) -> bool {
        !self.other && (self.ellipsis_char || self.dots >= 3)
    }
}

/// A unit: the cluster `[i, c)` with closers `[c, d)`, then `count - 1` more clusters across
/// spaces, all followed by reference marks up to `e`.
struct Unit {
    i: usize,
    c: usize,
    d: usize,
    e: usize,
    count: usize,
    /// Every cluster after the first is a single `.`.
    later_single_dots: bool,
    terms: Terms,
}

struct Scan<'a> {
    b: &'a [u8],
    last_cut: usize,
    /// (start, end, is URL/e-mail) of the whitespace-delimited token last looked at.
    url_cache: Option<(usize, usize, bool)>,
    /// The list marker the current sentence opens with.
    marker: Option<Marker>,
    out: &'a mut Vec<(usize, usize)>,
}

impl Scan<'_> {
    fn emit(&mut self, to: usize) {
        let (s, e) = strip(self.b, self.last_cut, to);
        if e > s {
            self.out.push((s, e));
        }
        self.last_cut = to;
    }

    /// Start of the token ending at `i`: after the last whitespace, but not before the last
    /// cut. Only looked for up to `MAX_WORD_BYTES + 1` bytes back: a longer word is "long".
    #[inline]
    fn tok_start(&self, i: usize) -> Option<usize> {
        let mut p = i;
        while p > self.last_cut {
            if ws_len_before(self.b, p) > 0 {
                return Some(p);
            }
            if i - p > MAX_WORD_BYTES {
                return None;
            }
            p -= 1;
        }
        Some(p)
    }

    /// Whether any non-whitespace lies in `[last_cut, tok_start)`.
    fn seen_nonws(&self, tok_start: usize) -> bool {
        let mut p = tok_start;
        while p > self.last_cut {
            let l = ws_len_before(self.b, p);
            if l == 0 {
                return true;
            }
            p -= l;
        }
        false
    }

    /// Start of the whitespace run that ends at `p`, not before the last cut.
    fn ws_back(&self, mut p: usize) -> usize {
        while p > self.last_cut {
            let l = ws_len_before(self.b, p);
            if l == 0 {
                break;
            }
            p -= l;
        }
        p
    }

    /// Whether the whitespace-delimited token holding `i` looks like a URL or an e-mail.
    fn url_token(&mut self, i: usize) -> bool {
        if let Some((s, e, flag)) = self.url_cache {
            if s <= i && i < e {
                return flag;
            }
        }
        let b = self.b;
        let mut s = i;
        while s > 0 && ws_len_before(b, s) == 0 {
            s -= 1;
        }
        let mut e = i;
        while e < b.len() && ws_len(b, e) == 0 {
            e += 1;
        }
        let t = &b[s..e];
        let has = |pat: &[u8]| t.windows(pat.len()).any(|w| w == pat);
        let flag = t.contains(&b'@') || has(b"://") || has(b"www.");
        self.url_cache = Some((s, e, flag));
        flag
    }

    /// A list marker may start at `q`: if it is the next item of the current sentence's
    /// list, the sentence ends right before it.
    fn inline_marker(&mut self, q: usize) {
        let Some(cur) = self.marker else { return };
        if q <= cur.start || ws_len_before(self.b, q) == 0 {
            return;
        }
        if let Some(m) = marker_at(self.b, q) {
            if cur.continued_by(&m) {
                self.emit(q);
                self.marker = Some(m);
            }
        }
    }

    /// A `.` or `)` at `s`: the marker it may end starts at the 1-2 digits or the lower-case
    /// letter before it.
    fn inline_marker_before(&mut self, s: usize) {
        let b = self.b;
        let mut q = s;
        while q > 0 && s - q < 3 && b[q - 1].is_ascii_digit() {
            q -= 1;
        }
        match s - q {
            0 if s > 0 && b[s - 1].is_ascii_lowercase() => self.inline_marker(s - 1),
            1 | 2 => self.inline_marker(q),
            _ => {}
        }
    }

    /// Where the unit `u` ends a sentence, if it does.
    fn unit_cut(&mut self, u: &Unit) -> Option<usize> {
        let b = self.b;
        let n = b.len();
        let (i, c, d, e) = (u.i, u.c, u.d, u.e);
        if e >= n {
            return Some(e);
        }
        let mut w = e;
        loop {
            let l = ws_len(b, w);
            if l == 0 {
                break;
            }
            w += l;
        }
        if w >= n {
            return Some(e);
        }
        let single = u.count == 1;
        let single_dot = single && c - i == 1 && b[i] == b'.';
        if w == e {
            let (x, xl) = decode(b, e);
            if !is_upper(x) || e + xl >= n || !is_lower(decode(b, e + xl).0) {
                return None;
            }
            if single_dot && i > 0 && b[i - 1].is_ascii_digit() {
                return None; // a dot code: "7.Bg5"
            }
            if self.url_token(i) {
                return None;
            }
            if single_dot && !self.word_rule(i, x, e) {
                return None;
            }
            return Some(e);
        }
        let (x, _) = decode(b, w);
        if is_term(x) {
            return None;
        }
        let mut k = w;
        let mut nx = None;
        while k < n {
            let (x, xl) = decode(b, k);
            if !is_opener(x) {
                nx = Some(x);
                break;
            }
            k += xl;
        }
        if single
            && i > 0
            && u.terms.ellipsis()
            && c < n
            && matches!((b[i - 1], b[c]), (b'[', b']') | (b'(', b')'))
        {
            return None; // an omission "[...]"
        }
        if nx.is_some_and(is_lower) {
            // a lower-case word goes on the sentence, unless it is the list's next marker
            self.marker
                .and_then(|cur| marker_at(b, k).filter(|m| cur.continued_by(m)))?;
        }
        if nx == Some(0x49) && u.terms.ellipsis() && !(k + 1 < n && b[k + 1].is_ascii_alphabetic())
        {
            return None; // ". . . I didn't mean it" goes on (golden rule 47)
        }
        if u.count >= 4
            && c - i == 1
            && d == c
            && b[i] == b'.'
            && i > 0
            && ws_len_before(b, i) == 0
            && u.later_single_dots
            && nx.is_some_and(is_upper)
            && self.word_rule(i, nx.unwrap_or(0), k)
        {
            return Some(d); // "compounds. . . . The": the period ends it, ". . ." opens the next
        }
        if single && c - i == 1 && b[i] == b'!' {
            let l = lists();
            if let Some(ts) = self.tok_start(i) {
                let s = self.skip_openers(ts, i);
                if in_list(&l.exclamation_words, key(&b[s..i])) {
                    return in_list(&l.starters, key(self.letters(k))).then_some(e);
                }
            }
            return Some(e);
        }
        if single_dot && !self.word_rule(i, nx.unwrap_or(0), k) {
            return None;
        }
        Some(e)
    }

    fn skip_openers(&self, mut s: usize, i: usize) -> usize {
        while s < i {
            let (x, xl) = decode(self.b, s);
            if !is_opener(x) {
                break;
            }
            s += xl;
        }
        s
    }

    /// The ASCII letters at `k` (up to MAX_STARTER_LEN + 1 of them: longer is no list word).
    #[inline]
    fn letters(&self, k: usize) -> &[u8] {
        let b = self.b;
        let mut e = k;
        while e < b.len() && b[e].is_ascii_alphabetic() && e - k <= MAX_STARTER_LEN {
            e += 1;
        }
        &b[k..e]
    }

    /// A single `.` at `i`; the next word's first character `nx` is at `k`.
    fn word_rule(&self, i: usize, nx: u32, k: usize) -> bool {
        let b = self.b;
        if self.marker.is_some_and(|m| m.dot == i) {
            return false; // the "." of the list marker that opens the sentence
        }
        let Some(tok_start) = self.tok_start(i) else {
            return true;
        };
        if i - tok_start > MAX_WORD_BYTES {
            return true;
        }
        let s = self.skip_openers(tok_start, i);
        let word = &b[s..i];
        if word.is_empty() {
            return true;
        }
        let list_marker = (word.len() <= 2 && word.iter().all(u8::is_ascii_digit))
            || (word.len() == 1 && word[0].is_ascii_alphabetic());
        if list_marker && !self.seen_nonws(tok_start) {
            return false;
        }
        let digit_next = (0x30..=0x39).contains(&nx);
        if matches!(word, b"N\xC2\xB0" | b"N\xC2\xBA") && digit_next {
            return false; // "N°. 5"
        }
        if !word.is_ascii() {
            return true;
        }
        let l = lists();
        let lw = key_lower(word);
        if word[0].is_ascii_uppercase() && in_list(&l.titles, lw) {
            return false;
        }
        if in_list(&l.never_end, lw) {
            return false;
        }
        if in_list(&l.number_abbr, lw) && digit_next {
            return false;
        }
        let nw = || key(self.letters(k));
        if lw == key(b"a.m") || lw == key(b"p.m") {
            if let Some(clock) = self.clock_before(tok_start) {
                let nw = nw();
                if in_list(&l.starters, nw) {
                    return true;
                }
                return !in_list(&l.time_qualifiers, nw) && !self.fronting(clock);
            }
        }
        if matches!(word, b"N" | b"S" | b"E" | b"W") && self.after_degrees(tok_start) {
            return true; // "2.35° E. It is"
        }
        if in_list(&l.sometimes_end, lw)
            || (word.len() == 1 && word[0].is_ascii_uppercase())
            || dotted(word)
        {
            return in_list(&l.starters, nw());
        }
        true
    }

    /// Start of the clock time (`9`, `10:30`) right before the token at `tok_start`.
    fn clock_before(&self, tok_start: usize) -> Option<usize> {
        let b = self.b;
        let p = self.ws_back(tok_start);
        if p == tok_start {
            return None;
        }
        let mut q = p;
        while q > self.last_cut && p - q < 6 && (b[q - 1].is_ascii_digit() || b[q - 1] == b':') {
            q -= 1;
        }
        if q > self.last_cut && ws_len_before(b, q) == 0 {
            return None;
        }
        clock(&b[q..p]).then_some(q)
    }

    /// Whether the sentence before `end` holds only words that frame a time, at most
    /// MAX_FRONTING_WORDS of them.
    fn fronting(&self, end: usize) -> bool {
        let b = self.b;
        let l = lists();
        let mut p = end;
        let mut words = 0;
        loop {
            p = self.ws_back(p);
            if p == self.last_cut {
                return true;
            }
            let mut q = p;
            while q > self.last_cut && ws_len_before(b, q) == 0 {
                q -= 1;
            }
            words += 1;
            let mut w = &b[q..p];
            while let [rest @ .., b','] = w {
                w = rest;
            }
            if words > MAX_FRONTING_WORDS || !w.is_ascii() || !in_list(&l.fronting, key_lower(w)) {
                return false;
            }
            p = q;
        }
    }

    fn after_degrees(&self, tok_start: usize) -> bool {
        let p = self.ws_back(tok_start);
        self.last_cut < p
            && p < tok_start
            && matches!(decode_before(self.b, p).0, 0xB0 | 0x2032 | 0x2033)
    }
}

pub fn split(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let n = b.len();
    let mut st = Scan {
        b,
        last_cut: 0,
        url_cache: None,
        marker: opening_marker(b, 0),
        out,
    };
    let mut i = 0;
    while i < n {
        let byte = b[i];
        if !STOP[byte as usize] {
            i += 1;
            continue;
        }
        if st.marker.is_some() {
            match byte {
                b'.' | b')' => st.inline_marker_before(i),
                b'-' => st.inline_marker(i),
                0xE2 if matches!(decode(b, i).0, 0x2022 | 0x2043) => st.inline_marker(i),
                _ => {}
            }
        }
        if byte == b')' || byte == b'-' {
            i += 1;
            continue;
        }
        let (x, xl) = decode(b, i);
        if is_lb(x) {
            st.emit(i);
            i += xl;
            st.marker = opening_marker(b, i);
            continue;
        }
        if !is_term(x) {
            i += xl;
            continue;
        }
        let (c, d) = cluster(b, i);
        let mut u = Unit {
            i,
            c,
            d,
            e: d,
            count: 1,
            later_single_dots: true,
            terms: Terms::default(),
        };
        u.terms.add(b, i, c);
        loop {
            // a spaced run ". . ." is one unit
            let mut w = u.e;
            loop {
                let l = inline_ws_len(b, w);
                if l == 0 {
                    break;
                }
                w += l;
            }
            if w == u.e || w >= n || !term_at(b, w) {
                break;
            }
            let (c2, d2) = cluster(b, w);
            u.terms.add(b, w, c2);
            u.later_single_dots &= c2 - w == 1 && b[w] == b'.';
            u.count += 1;
            u.e = d2;
        }
        u.e = after_references(b, u.e);
        if let Some(cut) = st.unit_cut(&u) {
            st.emit(cut);
            st.marker = opening_marker(b, cut);
        }
        i = u.e;
    }
    st.emit(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Vec<&str> {
        let mut v = Vec::new();
        split(text.as_bytes(), &mut v);
        v.into_iter().map(|(a, e)| &text[a..e]).collect()
    }

    #[test]
    fn abbreviations_and_names() {
        assert_eq!(
            s("Dr. Smith arrived at 5 p.m. He was late."),
            ["Dr. Smith arrived at 5 p.m.", "He was late."]
        );
        assert_eq!(
            s("J. K. Rowling wrote it, e.g. Harry Potter. Fine"),
            ["J. K. Rowling wrote it, e.g. Harry Potter.", "Fine"]
        );
        assert_eq!(
            s("She was happy.The end…  Really?! \"Yes.\" ok"),
            ["She was happy.", "The end…", "Really?!", "\"Yes.\" ok"]
        );
        assert_eq!(
            s("Cues:\n1. Frown.\n2. Tears."),
            ["Cues:", "1. Frown.", "2. Tears."]
        );
        assert_eq!(
            s("Mail john.Doe@x.com. It costs 3.50 in the U.S. Army."),
            ["Mail john.Doe@x.com.", "It costs 3.50 in the U.S. Army."]
        );
    }
}
