//! The batch deduplication engine behind `split_unique`, `parse_and_split_unique` and the
//! batch splitters: every text is split, and its sentences are numbered by their bytes over
//! the whole batch, so that each distinct sentence becomes one Python str (and one verifier
//! row). Pure Rust; runs without the GIL.
use crate::boundary::{map_texts, Buf, CharCursor, Text};
use crate::tags;

/// A fast non-keyed hash of a byte string: two FxHash-style lanes (multiply-rotate per 8
/// bytes) over alternate words, so the multiplies of a sentence run in parallel, seeded with
/// the length. Sentences are short and a table lives for one call: a keyed hash buys nothing.
#[inline]
pub fn fx_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    const K2: u64 = 0x9e_37_79_b9_7f_4a_7c_15;
    let n = bytes.len();
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as u64;
    let (mut a, mut b) = ((n as u64).wrapping_mul(K), K2);
    let mut mix = |x: u64, y: u64| {
        a = (a.rotate_left(5) ^ x).wrapping_mul(K);
        b = (b.rotate_left(5) ^ y).wrapping_mul(K2);
    };
    // The tail is read with (overlapping) whole-word loads, never assembled byte by byte in
    // a buffer: that store-to-load round trip stalled the CPU more than all the hashing.
    if n >= 16 {
        let mut i = 0;
        while i + 16 <= n {
            mix(u64_at(i), u64_at(i + 8));
            i += 16;
        }
        if i < n {
            mix(u64_at(n - 16), u64_at(n - 8));
        }
    } else if n >= 8 {
        mix(u64_at(0), u64_at(n - 8));
    } else if n >= 4 {
        mix(u32_at(0), u32_at(n - 4));
    } else if n > 0 {
        mix(
            bytes[0] as u64 | (bytes[n / 2] as u64) << 8 | (bytes[n - 1] as u64) << 16,
            0,
        );
    }
    // Buckets are picked by the low bits, and the low bits of a product only see the low
    // bits of its inputs: mix, then bring the well-mixed high bits down (as rustc-hash 2).
    (a ^ b.rotate_left(32)).wrapping_mul(K).rotate_left(26)
}

const EMPTY: u32 = u32::MAX;

/// Numbers the distinct byte strings of a batch in order of first occurrence: an
/// open-addressing table of (hash, id) with linear probing, at most half full. The hashes of
/// a text's sentences are computed first, so the table probes do not wait on each hash.
#[derive(Default)]
pub struct Dedup {
    table: Vec<(u64, u32)>,
    /// (text, start, end) of the first occurrence of each distinct string, by id.
    firsts: Vec<(usize, usize, usize)>,
    /// The bytes of each distinct string, back to back: comparisons read this small, hot
    /// buffer instead of first occurrences scattered over the batch.
    arena: Vec<u8>,
    /// End of each distinct string in `arena`, by id (start: the previous end).
    ends: Vec<usize>,
    hashes: Vec<u64>,
}

impl Dedup {
    pub fn len(&self) -> usize {
        self.firsts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.firsts.is_empty()
    }

    /// Appends to `ids` the id of each span of text `ti` (byte offsets into `texts[ti]`).
    pub fn add<T: AsRef<[u8]>>(
        &mut self,
        texts: &[T],
        ti: usize,
        spans: &[(usize, usize)],
        ids: &mut Vec<u32>,
    ) {
        let b = texts[ti].as_ref();
        self.hashes.clear();
        self.hashes
            .extend(spans.iter().map(|&(s, e)| fx_hash(&b[s..e])));
        for (k, &(s, e)) in spans.iter().enumerate() {
            if (self.firsts.len() + 1) * 2 > self.table.len() {
                self.grow();
            }
            let h = self.hashes[k];
            let mask = self.table.len() - 1;
            let mut i = h as usize & mask;
            let id = loop {
                let (hh, id) = self.table[i];
                if id == EMPTY {
                    let id = self.firsts.len() as u32;
                    self.table[i] = (h, id);
                    self.firsts.push((ti, s, e));
                    self.arena.extend_from_slice(&b[s..e]);
                    self.ends.push(self.arena.len());
                    break id;
                }
                if hh == h {
                    let end = self.ends[id as usize];
                    let start = if id == 0 {
                        0
                    } else {
                        self.ends[id as usize - 1]
                    };
                    if self.arena[start..end] == b[s..e] {
                        break id;
                    }
                }
                i = (i + 1) & mask;
            };
            ids.push(id);
        }
    }

    /// Appends ids for the spans of text `ti` without looking them up: each is taken as new
    /// (for results where sharing equal strings is only an optimisation).
    pub fn add_unchecked(&mut self, ti: usize, spans: &[(usize, usize)], ids: &mut Vec<u32>) {
        for &(s, e) in spans {
            ids.push(self.firsts.len() as u32);
            self.firsts.push((ti, s, e));
        }
    }

    fn grow(&mut self) {
        let size = (self.table.len() * 2).max(1024);
        let mut table = vec![(0u64, EMPTY); size];
        let mask = size - 1;
        for &(h, id) in self.table.iter().filter(|e| e.1 != EMPTY) {
            let mut i = h as usize & mask;
            while table[i].1 != EMPTY {
                i = (i + 1) & mask;
            }
            table[i] = (h, id);
        }
        self.table = table;
    }
}

/// The sentences of a batch, each distinct one once: `ids` numbers every occurrence (in
/// order) by its distinct sentence, `counts` has the number of sentences per text, and
/// `firsts` the text and span where each distinct sentence first occurs (code point offsets
/// for texts with lone surrogates, byte offsets else: see `Text::decodes`).
pub(crate) struct Unique {
    pub(crate) ids: Vec<u32>,
    pub(crate) counts: Vec<usize>,
    pub(crate) firsts: Vec<(usize, usize, usize)>,
}

/// Whether every repeated sentence must be found (`split_unique`), or finding most of them is
/// enough (lists of sentences, where sharing one str for equal sentences only saves time).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dedupe {
    All,
    WhileWorthIt,
}

/// With `Dedupe::WhileWorthIt`, sentences are looked up until at least this many were seen...
const DEDUP_PROBE: usize = 4096;
/// ...and then only while fewer than this share of them were new: a batch that repeats little
/// costs the lookups without saving string objects.
const DEDUP_GIVE_UP: f64 = 0.5;
/// ...or already after this many, when at least this share of them were new (a batch of
/// distinct sentences; a GRPO batch repeats more than that by then: 24 to 76 % new).
const DEDUP_EARLY: usize = 1024;
const DEDUP_EARLY_GIVE_UP: f64 = 0.9;
/// Sentences of one text looked up between two such checks.
const DEDUP_CHUNK: usize = 1024;

/// Splits every text with `f` (which appends sentence spans and returns what else it found)
/// and deduplicates the sentences of the batch by their bytes (UTF-8 or surrogatepass: equal
/// bytes are equal strings). Runs without the GIL. One thread: each text is deduplicated
/// right after its split, while its bytes are still in cache; with rayon, all texts are split
/// first.
pub(crate) fn split_dedup<P: Send>(
    texts: &[Text<'_>],
    parallel: bool,
    all: Dedupe,
    f: impl Fn(&[u8], &mut Vec<(usize, usize)>) -> P + Sync + Send,
) -> (Vec<P>, Unique) {
    let mut d = Dedup::default();
    let mut checking = true;
    // Stop looking sentences up once the batch shows it repeats few of them (when allowed).
    // A long text is looked at in chunks, so that one text alone can stop the lookups as a
    // batch of many does (one call on a long document is then as fast as the batch path).
    let mut add = |d: &mut Dedup, i: usize, v: &[(usize, usize)], ids: &mut Vec<u32>| {
        for chunk in v.chunks(DEDUP_CHUNK) {
            if checking {
                d.add(texts, i, chunk, ids);
                let (new, seen) = (d.len() as f64, ids.len() as f64);
                checking = all == Dedupe::All
                    || (ids.len() < DEDUP_PROBE
                        && (ids.len() < DEDUP_EARLY || new < DEDUP_EARLY_GIVE_UP * seen))
                    || new < DEDUP_GIVE_UP * seen;
            } else {
                d.add_unchecked(i, chunk, ids);
            }
        }
    };
    let mut ids = Vec::new();
    let mut counts = Vec::with_capacity(texts.len());
    let mut found = Vec::with_capacity(texts.len());
    if parallel {
        let results = map_texts(texts, true, |b| {
            let mut v = Vec::new();
            let p = f(b, &mut v);
            (p, v)
        });
        ids.reserve(results.iter().map(|(_, v)| v.len()).sum());
        for (i, (p, v)) in results.into_iter().enumerate() {
            counts.push(v.len());
            add(&mut d, i, &v, &mut ids);
            found.push(p);
        }
    } else {
        let mut v = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            v.clear();
            found.push(f(t.bytes(), &mut v));
            counts.push(v.len());
            add(&mut d, i, &v, &mut ids);
        }
    }
    // Code point offsets for cutting the Python strings of texts with lone surrogates (first
    // occurrences come in order); byte offsets, which are code point offsets for ASCII, else.
    let mut firsts = d.firsts;
    let mut cur: Option<(usize, CharCursor<'_>)> = None;
    for f in firsts.iter_mut() {
        let i = f.0;
        if !matches!(texts[i].buf, Buf::Wtf8(_)) {
            continue;
        }
        if cur.as_ref().is_none_or(|c| c.0 != i) {
            cur = Some((i, CharCursor::new(&texts[i])));
        }
        let c = &mut cur.as_mut().unwrap().1;
        *f = (i, c.at(f.1), c.at(f.2));
    }
    (
        found,
        Unique {
            ids,
            counts,
            firsts,
        },
    )
}

/// A splitter: appends the byte spans of the sentences of a text.
pub(crate) type Splitter = fn(&[u8], &mut Vec<(usize, usize)>);

/// Tags and the think span's sentences (completion offsets) of one completion.
pub(crate) fn parse_split(
    split: Splitter,
    b: &[u8],
    v: &mut Vec<(usize, usize)>,
) -> tags::ParsedSpans {
    let p = tags::parse(b);
    if let Some((s, e)) = p.think {
        let from = v.len();
        split(&b[s..e], v);
        for sp in &mut v[from..] {
            *sp = (sp.0 + s, sp.1 + s);
        }
    }
    p
}
