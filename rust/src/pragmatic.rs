//! Pragmatic mode: rule-based English sentence segmentation for model explanations.
//!
//! The rules (mirrored exactly by `_text_pure.split_pragmatic`, which is the readable spec):
//! * every line break (\n \r \x85 U+2028 U+2029) ends a sentence;
//! * a cluster of terminators (`.` `!` `?` `…`) plus closing quotes/brackets may end one;
//!   with whitespace after it, it does unless the next word starts lowercase or the next
//!   character is another terminator (spaced ellipses); without whitespace, only when a
//!   Capitalised word follows directly (`happy.The`) and the token is no URL or e-mail;
//! * a single `.` after a word is judged by that word: list markers (`1.` `a.` opening a
//!   sentence), titles (`Dr.`), abbreviations that never end a sentence (`e.g.`), ones before
//!   numbers (`No. 5`), and ones that may end a sentence (`etc.`, `U.S.`, initials `J.`), which
//!   do when the next word is a usual sentence opener (`The`, `He`, ...).
//!
//! Positions are byte offsets in UTF-8 (surrogates allowed); everything that depends on
//! length is defined in UTF-8 bytes so that the Python twin can compute the same.
use crate::ws::{decode, strip, ws_len};

pub const TITLES: &[&str] = &[
    "adm", "brig", "capt", "cmdr", "col", "det", "dr", "fr", "gen", "gov", "hon", "insp", "lt",
    "maj", "messrs", "mlle", "mme", "mr", "mrs", "ms", "mt", "pres", "prof", "rep", "rev", "sen",
    "sgt", "st", "supt",
];
pub const NEVER_END: &[&str] =
    &["al", "approx", "ca", "cf", "e.g", "esp", "i.e", "incl", "resp", "viz", "vs", "w.r.t"];
pub const NUMBER_ABBR: &[&str] = &[
    "art", "ch", "eq", "eqs", "fig", "figs", "no", "nos", "nr", "op", "p", "pp", "sec", "tab",
    "vol", "vols",
];
pub const SOMETIMES_END: &[&str] = &[
    "a.m", "apr", "aug", "ave", "b.a", "b.sc", "blvd", "bros", "co", "corp", "dec", "dept", "e.u",
    "est", "etc", "feb", "fri", "hr", "hrs", "inc", "jan", "jr", "jul", "jun", "llc", "ltd", "m.a",
    "m.d", "mar", "min", "mon", "nov", "oct", "p.m", "ph.d", "plc", "rd", "sat", "sep", "sept",
    "sr", "sun", "thu", "thur", "thurs", "tue", "tues", "u.k", "u.n", "u.s", "u.s.a", "univ",
    "wed",
];
pub const STARTERS: &[&str] = &[
    "A", "Additionally", "After", "Afterwards", "Again", "All", "Also", "Although", "An", "And",
    "Another", "Are", "As", "At", "Based", "Because", "Before", "Both", "But", "By", "Can",
    "Clearly", "Could", "Despite", "Did", "Do", "Does", "During", "Each", "Even", "Everyone",
    "Finally", "First", "For", "From", "Furthermore", "Given", "He", "Her", "Here", "His",
    "How", "However", "I", "If", "In", "Indeed", "Instead", "Is", "It", "Its", "Later",
    "Let", "Many", "Maybe", "Meanwhile", "Moreover", "Most", "My", "Next", "No", "Nobody",
    "Nothing", "Now", "Once", "One", "Only", "Other", "Our", "Overall", "Perhaps", "She", "Since",
    "So", "Some", "Someone", "Still", "Such", "That", "The", "Their", "Then", "There",
    "Therefore", "These", "They", "This", "Those", "Though", "Thus", "To", "Today", "We",
    "Were", "What", "When", "Where", "Which", "While", "Who", "Why", "With", "Yes", "Yet",
    "You", "Your",
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

fn in_list(list: &[&str], w: &[u8]) -> bool {
    list.iter().any(|x| x.as_bytes() == w)
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

/// Byte classes for the scan: 0 plain, 1 ASCII whitespace, 2 ASCII terminator,
/// 3 a lead byte of a character we must look at (U+0085, U+00A0, U+1680, U+2000.., U+3000).
const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 128 {
        let ws = (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
        if ws {
            t[c] = 1;
        }
        c += 1;
    }
    t[b'.' as usize] = 2;
    t[b'!' as usize] = 2;
    t[b'?' as usize] = 2;
    t[0xC2] = 3;
    t[0xE1] = 3;
    t[0xE2] = 3;
    t[0xE3] = 3;
    t
}
static CLASS: [u8; 256] = class_table();

struct Scan<'a> {
    b: &'a [u8],
    last_cut: usize,
    /// Start of the current token: after the last whitespace, or the last cut.
    tok_start: usize,
    /// Start of the current whitespace-delimited token (cuts do not move it).
    raw_tok_start: usize,
    /// Whether some non-whitespace lies in `[last_cut, tok_start)`.
    seen_nonws: bool,
    /// (raw token start, is URL/e-mail) for the token last looked at.
    url_cache: Option<(usize, bool)>,
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

    fn whitespace(&mut self, i: usize, len: usize, c: u32) {
        self.seen_nonws |= self.tok_start < i;
        if is_lb(c) {
            self.emit(i);
            self.seen_nonws = false;
        }
        self.tok_start = i + len;
        self.raw_tok_start = i + len;
    }

    fn cut(&mut self, d: usize) {
        self.emit(d);
        self.tok_start = d;
        self.seen_nonws = false;
    }

    fn url_token(&mut self) -> bool {
        if let Some((start, flag)) = self.url_cache {
            if start == self.raw_tok_start {
                return flag;
            }
        }
        let b = self.b;
        let mut e = self.raw_tok_start;
        while e < b.len() && ws_len(b, e) == 0 {
            e += 1;
        }
        let t = &b[self.raw_tok_start..e];
        let has = |pat: &[u8]| t.windows(pat.len()).any(|w| w == pat);
        let flag = t.contains(&b'@') || has(b"://") || has(b"www.");
        self.url_cache = Some((self.raw_tok_start, flag));
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
            if self.url_token() {
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
        if nx.is_some_and(is_lower) {
            return false;
        }
        !single_dot || self.word_rule(i, nx.unwrap_or(0), k)
    }

    /// A single `.` at `i`; the next word's first character `nx` is at `k`.
    fn word_rule(&self, i: usize, nx: u32, k: usize) -> bool {
        let b = self.b;
        if i - self.tok_start > MAX_WORD_BYTES {
            return true;
        }
        let mut s = self.tok_start;
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
        let first = !self.seen_nonws;
        if first
            && ((word.len() <= 2 && word.iter().all(u8::is_ascii_digit))
                || (word.len() == 1 && word[0].is_ascii_alphabetic()))
        {
            return false;
        }
        if !word.is_ascii() {
            return true;
        }
        let mut lw = [0u8; MAX_WORD_BYTES];
        let lw = &mut lw[..word.len()];
        lw.copy_from_slice(word);
        lw.make_ascii_lowercase();
        let lw = &*lw;
        if word[0].is_ascii_uppercase() && in_list(TITLES, lw) {
            return false;
        }
        if in_list(NEVER_END, lw) {
            return false;
        }
        if in_list(NUMBER_ABBR, lw) && (0x30..=0x39).contains(&nx) {
            return false;
        }
        if in_list(SOMETIMES_END, lw) || (word.len() == 1 && word[0].is_ascii_uppercase()) || dotted(word) {
            let mut e = k;
            while e < b.len() && b[e].is_ascii_alphabetic() && e - k <= MAX_STARTER_LEN {
                e += 1;
            }
            return in_list(STARTERS, &b[k..e]);
        }
        true
    }
}

pub fn split(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let n = b.len();
    let mut st = Scan { b, last_cut: 0, tok_start: 0, raw_tok_start: 0, seen_nonws: false, url_cache: None, out };
    let mut i = 0;
    while i < n {
        match CLASS[b[i] as usize] {
            0 => i += 1,
            1 => {
                st.whitespace(i, 1, b[i] as u32);
                i += 1;
            }
            cls => {
                let (x, xl) = decode(b, i);
                if cls == 3 && ws_len(b, i) > 0 {
                    st.whitespace(i, xl, x);
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
                    st.cut(d);
                }
                i = d;
            }
        }
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
        assert_eq!(s("Dr. Smith arrived at 5 p.m. He was late."), ["Dr. Smith arrived at 5 p.m.", "He was late."]);
        assert_eq!(s("J. K. Rowling wrote it, e.g. Harry Potter. Fine"), ["J. K. Rowling wrote it, e.g. Harry Potter.", "Fine"]);
        assert_eq!(s("She was happy.The end…  Really?! \"Yes.\" ok"), ["She was happy.", "The end…", "Really?!", "\"Yes.\" ok"]);
        assert_eq!(s("Cues:\n1. Frown.\n2. Tears."), ["Cues:", "1. Frown.", "2. Tears."]);
        assert_eq!(s("Mail john.Doe@x.com. It costs 3.50 in the U.S. Army."), ["Mail john.Doe@x.com.", "It costs 3.50 in the U.S. Army."]);
    }
}
