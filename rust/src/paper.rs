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
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { split_avx2(b, out) };
        }
    }
    split_sse2(b, out)
}

/// 32 bytes a step; the quotes before each terminator are a (hardware) popcount, so only
/// terminators are visited.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn split_avx2(b: &[u8], out: &mut Vec<(usize, usize)>) {
    use std::arch::x86_64::*;
    let total = memchr_iter(b'"', b).count();
    let mut st = State {
        total,
        before: 0,
        start: 0,
        resume: 0,
    };
    let mut i = 0;
    let (dot, bang, ask, quote) = (
        _mm256_set1_epi8(b'.' as i8),
        _mm256_set1_epi8(b'!' as i8),
        _mm256_set1_epi8(b'?' as i8),
        _mm256_set1_epi8(b'"' as i8),
    );
    while i + 32 <= b.len() {
        let v = _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i);
        let term = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, dot), _mm256_cmpeq_epi8(v, bang)),
            _mm256_cmpeq_epi8(v, ask),
        );
        let mut bits = _mm256_movemask_epi8(term) as u32;
        let quote_bits = if total > 0 {
            _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, quote)) as u32
        } else {
            0
        };
        let base = st.before;
        while bits != 0 {
            let k = bits.trailing_zeros();
            bits &= bits - 1;
            st.before = base + (quote_bits & ((1u32 << k) - 1)).count_ones() as usize;
            st.terminator(b, i + k as usize, out);
        }
        st.before = base + quote_bits.count_ones() as usize;
        i += 32;
    }
    st.tail(b, i, out);
}

/// 16 bytes a step with SSE2 (part of x86_64), quotes and terminators visited in order.
pub fn split_sse2(b: &[u8], out: &mut Vec<(usize, usize)>) {
    // Parity of the quotes after a candidate = parity of (all quotes - quotes before it). One
    // pass finds terminators and quotes together, in order, so `before` is always current.
    let total = memchr_iter(b'"', b).count();
    let mut st = State {
        total,
        before: 0,
        start: 0,
        resume: 0, // terminators before this lie inside a consumed whitespace run
    };
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        // SSE2 is part of x86_64: 16 bytes compared against the four bytes at once.
        use std::arch::x86_64::*;
        unsafe {
            let (dot, bang, ask, quote) = (
                _mm_set1_epi8(b'.' as i8),
                _mm_set1_epi8(b'!' as i8),
                _mm_set1_epi8(b'?' as i8),
                _mm_set1_epi8(b'"' as i8),
            );
            while i + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                let term = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, dot), _mm_cmpeq_epi8(v, bang)),
                    _mm_cmpeq_epi8(v, ask),
                );
                let term_bits = _mm_movemask_epi8(term) as u32;
                let quote_bits = if total > 0 {
                    _mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u32
                } else {
                    0
                };
                let mut bits = term_bits | quote_bits;
                while bits != 0 {
                    let k = bits.trailing_zeros();
                    bits &= bits - 1;
                    if quote_bits & (1 << k) != 0 {
                        st.before += 1;
                    } else {
                        st.terminator(b, i + k as usize, out);
                    }
                }
                i += 16;
            }
        }
    }
    st.tail(b, i, out);
}

struct State {
    total: usize,
    before: usize,
    start: usize,
    resume: usize,
}

impl State {
    /// The bytes from `i` on, one at a time, and the last piece.
    #[inline]
    fn tail(&mut self, b: &[u8], i: usize, out: &mut Vec<(usize, usize)>) {
        for (k, &c) in b[i..].iter().enumerate() {
            match c {
                b'"' => self.before += 1,
                b'.' | b'!' | b'?' => self.terminator(b, i + k, out),
                _ => {}
            }
        }
        if b.len() > self.start {
            out.push((self.start, b.len()));
        }
    }

    /// A terminator at `t`, with every quote before it counted in `before`.
    #[inline]
    fn terminator(&mut self, b: &[u8], t: usize, out: &mut Vec<(usize, usize)>) {
        if t < self.resume {
            return;
        }
        let j = t + 1;
        if ws_len(b, j) == 0 || !(self.total - self.before).is_multiple_of(2) {
            return;
        }
        if j > self.start {
            out.push((self.start, j));
        }
        self.start = skip_ws(b, j);
        self.resume = self.start;
    }
}

/// The scan with one memchr iterator per byte class (the reference for `split`'s SIMD loop).
pub fn split_memchr(b: &[u8], out: &mut Vec<(usize, usize)>) {
    let total = memchr_iter(b'"', b).count();
    let mut quote_iter = memchr_iter(b'"', b);
    let mut next_quote = if total > 0 { quote_iter.next() } else { None };
    let mut before = 0;
    let mut start = 0;
    let mut resume = 0;
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

    #[test]
    fn simd_scan_agrees_with_memchr_scan() {
        let alphabet: &[&[u8]] = &[
            b".",
            b"!",
            b"?",
            b" ",
            b"\n",
            b"\"",
            b"a",
            b"Bc",
            "\u{a0}".as_bytes(),
            "\u{3000}".as_bytes(),
            b"\xC2",
            b"\xE2\x80",
        ];
        let mut x: u64 = 0x2545F4914F6CDD1D;
        for _ in 0..100_000 {
            let mut b = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 140) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.extend_from_slice(alphabet[(x >> 11) as usize % alphabet.len()]);
            }
            let (mut fast, mut slow, mut sse2) = (Vec::new(), Vec::new(), Vec::new());
            split(&b, &mut fast);
            split_memchr(&b, &mut slow);
            split_sse2(&b, &mut sse2);
            assert_eq!(fast, slow, "{b:?}");
            assert_eq!(sse2, slow, "{b:?}");
        }
    }
}
