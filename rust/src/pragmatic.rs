//! Pragmatic mode: rule-based English sentence segmentation for model explanations.
//!
//! The rules (mirrored exactly by `_text_pure.split_pragmatic`, which is the readable spec):
//! * every line break (\n \r \x85 U+2028 U+2029) ends a sentence;
//! * a cluster of terminators (`.` `!` `?` `…`) plus closing quotes/brackets may end one;
//!   with whitespace after it, it does unless the next word starts lowercase (other than a
//!   list marker `b.`/`b)`) or the next character is another terminator (spaced ellipses); without whitespace, only when a
//!   Capitalised word follows directly (`happy.The`) and the token is no URL or e-mail;
//! * a single `.` after a word is judged by that word: list markers (`1.` `a.` opening a
//!   sentence), titles (`Dr.`), abbreviations that never end a sentence (`e.g.`), ones before
//!   numbers (`No. 5`), and ones that may end a sentence (`U.S.`, `a.m.`, initials `J.`), which
//!   do when the next word is a usual sentence opener (`The`, `He`, ...). `etc.` is an ordinary
//!   word: it ends a sentence before any capital.
//!
//! Positions are byte offsets in UTF-8 (surrogates allowed); everything that depends on
//! length is defined in UTF-8 bytes so that the Python twin can compute the same.
use crate::ws::{decode, strip, ws_len, ws_len_before};

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
    "She",
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
    "We",
    "Were",
    "What",
    "When",
    "Where",
    "Which",
    "While",
    "Who",
    "Why",
    "With",
    "Yes",
    "Yet",
    "You",
    "Your",
];
const MAX_WORD_BYTES: usize = 64;
const MAX_STARTER_LEN: usize = 16;

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
#[inline]
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

/// A lower-case list marker such as `b.` or `c)` followed by whitespace or the end.
fn list_marker_at(b: &[u8], k: usize) -> bool {
    k + 1 < b.len()
        && b[k].is_ascii_lowercase()
        && matches!(b[k + 1], b'.' | b')')
        && (k + 2 == b.len() || ws_len(b, k + 2) > 0)
}

/// Bytes the scan stops at: terminators, ASCII line breaks, and the lead bytes of U+0085,
/// U+2026 (…), U+2028 and U+2029. Everything else is skipped one byte per step.
const fn stop_table() -> [bool; 256] {
    let mut t = [false; 256];
    t[b'.' as usize] = true;
    t[b'!' as usize] = true;
    t[b'?' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[0xC2] = true;
    t[0xE2] = true;
    t
}
static STOP: [bool; 256] = stop_table();

struct Scan<'a> {
    b: &'a [u8],
    last_cut: usize,
    /// (start, end, is URL/e-mail) of the whitespace-delimited token last looked at.
    url_cache: Option<(usize, usize, bool)>,
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

    /// Whether a cluster `[i, c)` of terminators with closers `[c, d)` ends a sentence.
    fn decide(&mut self, i: usize, c: usize, d: usize) -> bool {
        let b = self.b;
        let n = b.len();
        if d >= n {
            return true;
        }
        let mut w = d;
        loop {
            let l = ws_len(b, w);
            if l == 0 {
                break;
            }
            w += l;
        }
        if w >= n {
            return true;
        }
        let single_dot = c - i == 1 && b[i] == b'.';
        if w == d {
            let (x, xl) = decode(b, d);
            if !is_upper(x) || d + xl >= n || !is_lower(decode(b, d + xl).0) {
                return false;
            }
            if self.url_token(i) {
                return false;
            }
            return !single_dot || self.word_rule(i, x, d);
        }
        let (x, _) = decode(b, w);
        if is_term(x) {
            return false;
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
        if nx.is_some_and(is_lower) && !list_marker_at(b, k) {
            return false;
        }
        !single_dot || self.word_rule(i, nx.unwrap_or(0), k)
    }

    /// A single `.` at `i`; the next word's first character `nx` is at `k`.
    fn word_rule(&self, i: usize, nx: u32, k: usize) -> bool {
        let b = self.b;
        let Some(tok_start) = self.tok_start(i) else {
            return true;
        };
        if i - tok_start > MAX_WORD_BYTES {
            return true;
        }
        let mut s = tok_start;
        while s < i {
            let (x, xl) = decode(b, s);
            if !is_opener(x) {
                break;
            }
            s += xl;
        }
        let word = &b[s..i];
        if word.is_empty() {
            return true;
        }
        let list_marker = (word.len() <= 2 && word.iter().all(u8::is_ascii_digit))
            || (word.len() == 1 && word[0].is_ascii_alphabetic());
        if list_marker && !self.seen_nonws(tok_start) {
            return false;
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
        if in_list(&l.number_abbr, lw) && (0x30..=0x39).contains(&nx) {
            return false;
        }
        if in_list(&l.sometimes_end, lw)
            || (word.len() == 1 && word[0].is_ascii_uppercase())
            || dotted(word)
        {
            let mut e = k;
            while e < b.len() && b[e].is_ascii_alphabetic() && e - k <= MAX_STARTER_LEN {
                e += 1;
            }
            return in_list(&l.starters, key(&b[k..e]));
        }
        true
    }
}

pub fn split(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let n = b.len();
    let mut st = Scan {
        b,
        last_cut: 0,
        url_cache: None,
        out,
    };
    let mut i = 0;
    while i < n {
        if !STOP[b[i] as usize] {
            i += 1;
            continue;
        }
        let (x, xl) = decode(b, i);
        if is_lb(x) {
            st.emit(i);
            i += xl;
            continue;
        }
        if !is_term(x) {
            i += xl;
            continue;
        }
        let mut c = i + xl;
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
        if st.decide(i, c, d) {
            st.emit(d);
        }
        i = d;
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
