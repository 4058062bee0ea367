//! The release's three tag regexes as direct scans (see `_text_pure.py` for the regexes):
//!   format  `<think>.*?</think>\s*<answer>.*?</answer>`  fullmatch, DOTALL
//!   think   `<think>(.*?)</think>`                        search, DOTALL, group stripped
//!   answer  `<answer>(.*?)</answer>`                      search, NOT DOTALL, group stripped
use crate::ws::{skip_ws, strip};
use memchr::memchr;
use memchr::memmem::Finder;
use std::sync::OnceLock;

const THINK_OPEN: &[u8] = b"<think>";
const THINK_CLOSE: &[u8] = b"</think>";
const ANSWER_OPEN: &[u8] = b"<answer>";
const ANSWER_CLOSE: &[u8] = b"</answer>";

struct Finders {
    think_open: Finder<'static>,
    think_close: Finder<'static>,
    answer_open: Finder<'static>,
    answer_close: Finder<'static>,
}

fn finders() -> &'static Finders {
    static F: OnceLock<Finders> = OnceLock::new();
    F.get_or_init(|| Finders {
        think_open: Finder::new(THINK_OPEN),
        think_close: Finder::new(THINK_CLOSE),
        answer_open: Finder::new(ANSWER_OPEN),
        answer_close: Finder::new(ANSWER_CLOSE),
    })
}

/// Byte spans of one parsed completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedSpans {
    pub format_ok: bool,
    pub think: Option<(usize, usize)>,
    pub answer: Option<(usize, usize)>,
}

pub fn parse(b: &[u8]) -> ParsedSpans {
    let f = finders();
    ParsedSpans {
        format_ok: format_ok(b, f),
        think: think(b, f),
        answer: answer(b, f),
    }
}

/// Fullmatch of the format regex. The lazy `.*?` parts may hold anything, so the text matches
/// iff it starts with `<think>`, ends with `</answer>`, and some `</think>` is followed by
/// whitespace and then an `<answer>` that ends before the final `</answer>`.
fn format_ok(b: &[u8], f: &Finders) -> bool {
    let n = b.len();
    if n < THINK_OPEN.len() + THINK_CLOSE.len() + ANSWER_OPEN.len() + ANSWER_CLOSE.len()
        || !b.starts_with(THINK_OPEN)
        || !b.ends_with(ANSWER_CLOSE)
    {
        return false;
    }
    let limit = n - ANSWER_CLOSE.len(); // where the final </answer> starts
    let mut from = THINK_OPEN.len();
    while let Some(off) = f.think_close.find(&b[from..limit]) {
        let p = from + off;
        let q = skip_ws(b, p + THINK_CLOSE.len());
        if q + ANSWER_OPEN.len() <= limit && &b[q..q + ANSWER_OPEN.len()] == ANSWER_OPEN {
            return true;
        }
        from = p + 1;
    }
    false
}

fn think(b: &[u8], f: &Finders) -> Option<(usize, usize)> {
    let s = f.think_open.find(b)? + THINK_OPEN.len();
    let e = s + f.think_close.find(&b[s..])?;
    Some(strip(b, s, e))
}

/// Leftmost `<answer>` whose first following `</answer>` is on the same line. A newline between
/// them rules out every `<answer>` before that newline too, so the scan resumes after it.
fn answer(b: &[u8], f: &Finders) -> Option<(usize, usize)> {
    let mut from = 0;
    loop {
        let s = from + f.answer_open.find(&b[from..])? + ANSWER_OPEN.len();
        let e = s + f.answer_close.find(&b[s..])?;
        match memchr(b'\n', &b[s..e]) {
            None => return Some(strip(b, s, e)),
            Some(nl) => from = s + nl + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (bool, Option<&str>, Option<&str>) {
        let r = parse(s.as_bytes());
        (
            r.format_ok,
            r.think.map(|(a, e)| &s[a..e]),
            r.answer.map(|(a, e)| &s[a..e]),
        )
    }

    #[test]
    fn release_semantics() {
        assert_eq!(
            p("<think> a </think>\n<answer> happy </answer>"),
            (true, Some("a"), Some("happy"))
        );
        assert_eq!(
            p("<think>a</think>x<answer>b</answer>"),
            (false, Some("a"), Some("b"))
        );
        assert_eq!(
            p("<answer>a\nb</answer><answer>c</answer>"),
            (false, None, Some("c"))
        );
        assert_eq!(
            p("<think>a</think></think> <answer></answer>"),
            (true, Some("a"), Some(""))
        );
        assert_eq!(
            p("<think></think><answer></answer>"),
            (true, Some(""), Some(""))
        );
        assert_eq!(p("<think><answer></answer>"), (false, None, Some("")));
    }
}
