//! Paper mode: the release's split regex `(?<=[\.!?])\s+(?=(?:[^"]*"[^"]*")*[^"]*$)`.
//!
//! The lookahead holds exactly when the rest of the text has an even number of `"` (the
//! `[^"]*` parts cross newlines, and `$` may only skip a final newline, which is no quote).
//! Whitespace holds no quote, so the parity is the same anywhere in a whitespace run, and the
//! greedy `\s+` takes the whole run. A run can only match at its start (the lookbehind needs a
//! terminator right before it). Pieces are not stripped; empty pieces are dropped.
use crate::ws::{skip_ws, ws_len};
use memchr::{memchr3_iter, memchr_iter};

pub fn split(b: &[u8], out: &mut Vec<(usize, usize)>) {
    // Parity of the quotes after a candidate = parity of (all quotes - quotes before it); the
    // quotes before it are counted by walking one memchr iterator forward, once over the text.
    let total = memchr_iter(b'"', b).count();
    let mut quote_iter = memchr_iter(b'"', b);
    let mut next_quote = if total > 0 { quote_iter.next() } else { None };
    let mut before = 0;
    let mut start = 0;
    let mut resume = 0; // terminators before this lie inside a consumed whitespace run
    for t in memchr3_iter(b'.', b'!', b'?', b) {
        if t < resume {
            continue;
        }
        let j = t + 1;
        if ws_len(b, j) == 0 {
            continue;
        }
        while let Some(q) = next_quote {
            if q >= j {
                break;
            }
            before += 1;
            next_quote = quote_iter.next();
        }
        if !(total - before).is_multiple_of(2) {
            continue;
        }
        if j > start {
            out.push((start, j));
        }
        start = skip_ws(b, j);
        resume = start;
    }
    if b.len() > start {
        out.push((start, b.len()));
    }
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
    fn splits_outside_quotes_only() {
        assert_eq!(
            s("He smiles. \"Great. Fine\" she says! Done"),
            ["He smiles.", "\"Great. Fine\" she says!", "Done"]
        );
        assert_eq!(s("a.\u{85}b?\u{3000} c"), ["a.", "b?", "c"]);
        assert_eq!(s(" a. "), [" a."]);
        assert_eq!(s("a. \"b"), ["a. \"b"]);
        assert!(s("").is_empty());
    }
}
