//! Unit tests of the boundary helpers and the dedup engine, and a bounded in-tree fuzz run of
//! the scanners (`cargo test` in rust/; the unbounded harness is rust/fuzz).
use crate::boundary::{count_chars, Buf, CharCursor, Text};
use crate::dedup::{fx_hash, split_dedup, Dedup, Dedupe};
use crate::{paper, pragmatic, tags};

/// Each distinct byte string gets the next id at its first occurrence, over all texts.
#[test]
fn dedup_numbers_distinct_strings_in_order_of_first_occurrence() {
    let texts: [&[u8]; 2] = [b"one two one", b"two three"];
    let mut d = Dedup::default();
    let mut ids = Vec::new();
    d.add(&texts, 0, &[(0, 3), (4, 7), (8, 11)], &mut ids);
    d.add(&texts, 1, &[(0, 3), (4, 9)], &mut ids);
    assert_eq!(ids, [0, 1, 0, 1, 2]);
    assert_eq!(d.len(), 3);
}

/// Repeats are still found after the table has grown several times (1024 slots at first,
/// at most half full).
#[test]
fn dedup_finds_repeats_after_growing() {
    let text: Vec<u8> = (0..3000)
        .flat_map(|i| format!("{i:04}").into_bytes())
        .collect();
    let spans: Vec<(usize, usize)> = (0..3000).map(|i| (4 * i, 4 * i + 4)).collect();
    let mut d = Dedup::default();
    let mut ids = Vec::new();
    d.add(&[&text[..]], 0, &spans, &mut ids);
    d.add(&[&text[..]], 0, &spans, &mut ids);
    assert_eq!(d.len(), 3000);
    assert_eq!(ids[..3000], ids[3000..]);
    assert_eq!(ids[..3000], (0..3000).collect::<Vec<u32>>()[..]);
}

/// Equal bytes hash equal; 10,000 short distinct strings (every length of the tail loads)
/// get 10,000 distinct hashes.
#[test]
fn fx_hash_separates_short_strings() {
    assert_eq!(fx_hash(b"same bytes"), fx_hash(&b"xsame bytes"[1..]));
    let hashes: std::collections::HashSet<u64> = (0..10_000u32)
        .map(|i| fx_hash(&format!("{i}").repeat(1 + i as usize % 7).into_bytes()))
        .collect();
    assert_eq!(hashes.len(), 10_000);
}

/// Code points of UTF-8 and surrogatepass bytes, across the eight-byte words.
#[test]
fn count_chars_counts_code_points() {
    assert_eq!(count_chars("a\u{e9}\u{20ac}\u{1f600}".as_bytes()), 4);
    assert_eq!(count_chars("\u{e9}".repeat(9).as_bytes()), 9);
    assert_eq!(count_chars(b"\xED\xA0\x80x"), 2);
    assert_eq!(count_chars(b""), 0);
}

/// Byte offsets to code point offsets, forward and (restarting) backward.
#[test]
fn char_cursor_maps_byte_offsets_to_code_points() {
    let t = Text {
        buf: Buf::Utf8("a\u{e9}\u{20ac}b".as_bytes()),
        ascii: false,
    };
    let mut c = CharCursor::new(&t);
    assert_eq!(
        [c.at(1), c.at(3), c.at(6), c.at(7), c.at(1)],
        [1, 2, 3, 4, 1]
    );
}

/// The engine behind `split_unique`: ids of every sentence, counts per text, and first
/// occurrences in code points for a text with a lone surrogate (U+D800 as surrogatepass).
#[test]
fn split_dedup_numbers_the_sentences_of_a_batch() {
    let texts = [
        Text {
            buf: Buf::Utf8(b"Hi. Yo. Hi."),
            ascii: true,
        },
        Text {
            buf: Buf::Wtf8(b"Yo. \xC3\xA9\xED\xA0\x80 ok. Hi.".to_vec()),
            ascii: false,
        },
    ];
    for parallel in [false, true] {
        let (_, u) = split_dedup(&texts, parallel, Dedupe::All, paper::split);
        assert_eq!(u.ids, [0, 1, 0, 1, 2, 0]);
        assert_eq!(u.counts, [3, 3]);
        assert_eq!(u.firsts, [(0, 0, 3), (0, 4, 7), (1, 4, 10)]);
    }
}

/// A small in-tree fuzz run (xorshift over byte soup biased to the interesting bytes):
/// no panic and sane spans, for inputs that are not even valid UTF-8.
#[test]
fn random_bytes_never_panic() {
    let alphabet: &[&[u8]] = &[
        b".",
        b"!",
        b"?",
        b" ",
        b"\n",
        b"\"",
        b"'",
        b")",
        b"<think>",
        b"</think>",
        b"<answer>",
        b"</answer>",
        b"A",
        b"a",
        b"Dr",
        b"e.g",
        "\u{2026}".as_bytes(),
        "\u{a0}".as_bytes(),
        "\u{2028}".as_bytes(),
        b"\xE2",
        b"\xC2",
        b"\xE2\x80",
        b"\xED\xA0\x80",
        b"\xFF",
        b"@",
    ];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 40) as usize;
        let mut b = Vec::new();
        for _ in 0..len {
            let r = next();
            if r % 5 == 0 {
                b.push((r >> 8) as u8);
            } else {
                b.extend_from_slice(alphabet[(r >> 8) as usize % alphabet.len()]);
            }
        }
        let p = tags::parse(&b);
        for (s, e) in p.think.into_iter().chain(p.answer) {
            assert!(s <= e && e <= b.len());
        }
        for split in [paper::split, pragmatic::split] {
            let mut v = Vec::new();
            split(&b, &mut v);
            let mut last = 0;
            for (s, e) in v {
                assert!(last <= s && s < e && e <= b.len(), "{b:?}");
                last = e;
            }
        }
    }
}
