//! Python's notion of whitespace (`str.isspace()`, which is also what `\s` matches in a `re`
//! str pattern) on UTF-8 bytes, plus a decoder that tolerates the surrogate code points
//! Python strings may hold (we receive those as "surrogatepass" UTF-8, a.k.a. WTF-8).

/// ASCII whitespace per `str.isspace()`: \t \n \v \f \r, the separators \x1c-\x1f, space.
const fn ascii_ws_table() -> [bool; 128] {
    let mut t = [false; 128];
    let mut c = 0x09;
    while c <= 0x0d {
        t[c] = true;
        c += 1;
    }
    c = 0x1c;
    while c <= 0x20 {
        t[c] = true;
        c += 1;
    }
    t
}
static ASCII_WS: [bool; 128] = ascii_ws_table();

/// Byte length of the whitespace character starting at `i`, or 0 if there is none.
#[inline]
pub fn ws_len(b: &[u8], i: usize) -> usize {
    let Some(&c) = b.get(i) else { return 0 };
    if c < 0x80 {
        return ASCII_WS[c as usize] as usize;
    }
    match c {
        // U+0085, U+00A0
        0xC2 => matches!(b.get(i + 1), Some(0x85 | 0xA0)) as usize * 2,
        // U+1680
        0xE1 => (b.get(i + 1) == Some(&0x9A) && b.get(i + 2) == Some(&0x80)) as usize * 3,
        0xE2 => match (b.get(i + 1), b.get(i + 2)) {
            // U+2000..U+200A, U+2028, U+2029, U+202F
            (Some(0x80), Some(&x))
                if (0x80..=0x8A).contains(&x) || matches!(x, 0xA8 | 0xA9 | 0xAF) =>
            {
                3
            }
            // U+205F
            (Some(0x81), Some(0x9F)) => 3,
            _ => 0,
        },
        // U+3000
        0xE3 => (b.get(i + 1) == Some(&0x80) && b.get(i + 2) == Some(&0x80)) as usize * 3,
        _ => 0,
    }
}

/// Byte length of the whitespace character that ends right before `end`, or 0.
#[inline]
pub fn ws_len_before(b: &[u8], end: usize) -> usize {
    if end == 0 {
        return 0;
    }
    let c = b[end - 1];
    if c < 0x80 {
        return ASCII_WS[c as usize] as usize;
    }
    if end >= 2 && ws_len(b, end - 2) == 2 {
        return 2;
    }
    if end >= 3 && ws_len(b, end - 3) == 3 {
        return 3;
    }
    0
}

/// End of the whitespace run that starts at `i`.
#[inline]
pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
    loop {
        let l = ws_len(b, i);
        if l == 0 {
            return i;
        }
        i += l;
    }
}

/// `str.strip()` on the byte span `[s, e)`.
#[inline]
pub fn strip(b: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e {
        let l = ws_len(b, s);
        if l == 0 || s + l > e {
            break;
        }
        s += l;
    }
    while e > s {
        let l = ws_len_before(b, e);
        if l == 0 || e - l < s {
            break;
        }
        e -= l;
    }
    (s, e)
}

/// Decode the code point at `i` (UTF-8, surrogates allowed); returns (code point, length).
/// Malformed bytes decode as themselves with length 1, so scanning never stalls or panics.
#[inline]
pub fn decode(b: &[u8], i: usize) -> (u32, usize) {
    let c = b[i] as u32;
    if c < 0x80 {
        return (c, 1);
    }
    let cont = |k: usize| -> Option<u32> {
        match b.get(i + k) {
            Some(&x) if x & 0xC0 == 0x80 => Some((x & 0x3F) as u32),
            _ => None,
        }
    };
    if c & 0xE0 == 0xC0 {
        if let Some(x) = cont(1) {
            return (((c & 0x1F) << 6) | x, 2);
        }
    } else if c & 0xF0 == 0xE0 {
        if let (Some(x), Some(y)) = (cont(1), cont(2)) {
            return (((c & 0x0F) << 12) | (x << 6) | y, 3);
        }
    } else if c & 0xF8 == 0xF0 {
        if let (Some(x), Some(y), Some(z)) = (cont(1), cont(2), cont(3)) {
            return (((c & 0x07) << 18) | (x << 12) | (y << 6) | z, 4);
        }
    }
    (c, 1)
}

/// Decode the code point that ends right before `end`; returns (code point, length).
#[inline]
pub fn decode_before(b: &[u8], end: usize) -> (u32, usize) {
    let mut s = end - 1;
    let lo = end.saturating_sub(4);
    while s > lo && b[s] & 0xC0 == 0x80 {
        s -= 1;
    }
    let (c, l) = decode(b, s);
    if s + l == end {
        (c, l)
    } else {
        (b[end - 1] as u32, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_unicode_whitespace() {
        let s = "\u{3000}\x1c a b\u{85}\u{2028}";
        let (a, e) = strip(s.as_bytes(), 0, s.len());
        assert_eq!(&s[a..e], "a b");
        let s = "\u{a0}\u{a0}";
        assert_eq!(strip(s.as_bytes(), 0, s.len()), (4, 4));
    }

    #[test]
    fn decode_handles_surrogates_and_garbage() {
        assert_eq!(decode(b"\xED\xA0\x80", 0), (0xD800, 3));
        assert_eq!(decode(b"\xE2\x80", 0), (0xE2, 1));
        assert_eq!(decode_before("a\u{2026}".as_bytes(), 4), (0x2026, 3));
    }
}
