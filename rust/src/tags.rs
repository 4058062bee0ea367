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
    if let Some(p) = parse_once(b) {
        return p;
    }
    let f = finders();
    ParsedSpans {
        format_ok: format_ok(b, f),
        think: think(b, f),
        answer: answer(b, f),
    }
}

/// The usual completion, with each of the four tags at most once: one memchr pass over `<`
/// finds them all and the three results follow from their offsets (the searches below would
/// read the explanation three times). None when some tag repeats: then those searches run.
fn parse_once(b: &[u8]) -> Option<ParsedSpans> {
    let n = b.len();
    // Offsets of <think>, </think>, <answer>, </answer>.
    let mut at: [Option<usize>; 4] = [None; 4];
    for p in memchr::memchr_iter(b'<', b) {
        let rest = &b[p..];
        let tag = if rest.starts_with(THINK_OPEN) {
            0
        } else if rest.starts_with(THINK_CLOSE) {
            1
        } else if rest.starts_with(ANSWER_OPEN) {
            2
        } else if rest.starts_with(ANSWER_CLOSE) {
            3
        } else {
            continue;
        };
        if at[tag].replace(p).is_some() {
            return None;
        }
    }
    let [open, close, a_open, a_close] = at;
    // think: the first </think> after the first <think>.
    let think = match (open, close) {
        (Some(o), Some(c)) if c >= o + THINK_OPEN.len() => Some(strip(b, o + THINK_OPEN.len(), c)),
        _ => None,
    };
    // answer: the first </answer> after <answer>, with no newline between them.
    let answer = match (a_open, a_close) {
        (Some(o), Some(c)) if c >= o + ANSWER_OPEN.len() => {
            let s = o + ANSWER_OPEN.len();
            memchr(b'\n', &b[s..c]).is_none().then(|| strip(b, s, c))
        }
        _ => None,
    };
    // format: <think> at the start, </answer> at the end, and after the </think> (inside
    // them) only whitespace up to an <answer> that starts before the final </answer>.
    let limit = n.wrapping_sub(ANSWER_CLOSE.len());
    let format_ok = n
        >= THINK_OPEN.len() + THINK_CLOSE.len() + ANSWER_OPEN.len() + ANSWER_CLOSE.len()
        && open == Some(0)
        && a_close == Some(limit)
        && close.is_some_and(|c| {
            c >= THINK_OPEN.len() && c + THINK_CLOSE.len() <= limit && {
                let q = skip_ws(b, c + THINK_CLOSE.len());
                q + ANSWER_OPEN.len() <= limit && a_open == Some(q)
            }
        });
    Some(ParsedSpans {
        format_ok,
        think,
        answer,
    })
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

    /// The one-pass parse agrees with the searches on every text where it answers.
    #[test]
    fn one_pass_agrees_with_the_searches() {
        let pieces: &[&[u8]] = &[
            b"<think>",
            b"</think>",
            b"<answer>",
            b"</answer>",
            b"<",
            b"a",
            b" ",
            b"\n",
            b"\t",
            b"<think",
            b"answer>",
            b"</",
            b"x.",
        ];
        let f = finders();
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut answered = 0;
        for _ in 0..100_000 {
            let mut b = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.extend_from_slice(pieces[(x >> 11) as usize % pieces.len()]);
            }
            if let Some(p) = parse_once(&b) {
                answered += 1;
                let want = ParsedSpans {
                    format_ok: format_ok(&b, f),
                    think: think(&b, f),
                    answer: answer(&b, f),
                };
                assert_eq!(p, want, "{:?}", String::from_utf8_lossy(&b));
            }
        }
        assert!(answered > 50_000);
    }
}
