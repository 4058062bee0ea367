//! `erv_plugins._native`: the reward hot path (tag parsing, sentence segmentation).
//!
//! The boundary is coarse: one call per batch. Texts are borrowed as UTF-8 (zero-copy for
//! ASCII strings), the GIL is released while spans are computed (in parallel with rayon for
//! large batches), and Python strings are cut from the original str at the end. Strings holding
//! lone surrogates are scanned in their "surrogatepass" encoding and cut by code point offsets,
//! so every Python str gets an exact answer and nothing panics across the boundary.
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};
use rayon::prelude::*;

pub mod labelsets;
pub mod paper;
pub mod pragmatic;
pub mod tags;
pub mod ws;

/// Batches with at least this many bytes in all go to rayon when `parallel` is left to us
/// (about 0.3 ms of scanning: well above rayon's few microseconds of fork/join).
const PARALLEL_MIN_BYTES: usize = 1 << 18;

enum Buf<'a> {
    Utf8(&'a [u8]),
    /// Surrogatepass-encoded (a str holding lone surrogates).
    Wtf8(Vec<u8>),
}

struct Text<'a> {
    buf: Buf<'a>,
    /// One byte per code point: spans are code point offsets too, so sentences can be cut
    /// from the original str with PyUnicode_Substring (a memcpy, no UTF-8 decoding).
    ascii: bool,
}

impl Text<'_> {
    fn bytes(&self) -> &[u8] {
        match &self.buf {
            Buf::Utf8(b) => b,
            Buf::Wtf8(v) => v,
        }
    }

    /// Pieces are made from the UTF-8 bytes (non-ASCII text without lone surrogates): CPython
    /// decodes an ASCII piece with a plain copy, where cutting a 2- or 4-byte-wide str would
    /// scan and narrow every character, and no code point offsets are needed.
    fn decodes(&self) -> bool {
        !self.ascii && matches!(self.buf, Buf::Utf8(_))
    }
}

/// The piece `b[s..e]` of a `Text` that `decodes()`, as a new str.
fn decode_str<'py>(
    py: Python<'py>,
    b: &[u8],
    (s, e): (usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
    unsafe {
        let p =
            ffi::PyUnicode_FromStringAndSize(b.as_ptr().add(s).cast(), (e - s) as ffi::Py_ssize_t);
        Bound::from_owned_ptr_or_err(py, p)
    }
}

fn texts_of<'a, 'py>(items: &'a [Bound<'py, PyString>]) -> PyResult<Vec<Text<'a>>> {
    items
        .iter()
        .map(|s| match s.to_str() {
            Ok(t) => {
                let chars = unsafe { ffi::PyUnicode_GetLength(s.as_ptr()) };
                Ok(Text {
                    buf: Buf::Utf8(t.as_bytes()),
                    ascii: chars as usize == t.len(),
                })
            }
            Err(_) => {
                // Lone surrogates: the UnicodeEncodeError from to_str is dropped on purpose.
                let raw = unsafe {
                    ffi::PyUnicode_AsEncodedString(
                        s.as_ptr(),
                        c"utf-8".as_ptr(),
                        c"surrogatepass".as_ptr(),
                    )
                };
                let bytes = unsafe { Bound::from_owned_ptr_or_err(s.py(), raw)? };
                let bytes = bytes.cast_into::<PyBytes>()?;
                Ok(Text {
                    buf: Buf::Wtf8(bytes.as_bytes().to_vec()),
                    ascii: false,
                })
            }
        })
        .collect()
}

fn strings_of<'py>(texts: &Bound<'py, PyList>) -> PyResult<Vec<Bound<'py, PyString>>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.cast_into::<PyString>().map_err(|e| {
                let got = e.into_inner();
                let ty = got
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into());
                PyTypeError::new_err(format!("texts[{i}] is {ty}, expected str"))
            })
        })
        .collect()
}

/// Code points in UTF-8 (or surrogatepass) bytes: every byte that is not a continuation byte
/// (10xxxxxx), counted eight bytes at a time.
#[inline]
fn count_chars(b: &[u8]) -> usize {
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut cont = 0usize;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap());
        cont += (w & !(w << 1) & HI).count_ones() as usize;
    }
    cont += chunks
        .remainder()
        .iter()
        .filter(|&&c| c & 0xC0 == 0x80)
        .count();
    b.len() - cont
}

/// Turns ascending byte offsets of one text into code point offsets, walking forward.
struct CharCursor<'t> {
    b: &'t [u8],
    ascii: bool,
    decodes: bool,
    byte: usize,
    chr: usize,
}

impl<'t> CharCursor<'t> {
    fn new(text: &'t Text<'_>) -> Self {
        CharCursor {
            b: text.bytes(),
            ascii: text.ascii,
            decodes: text.decodes(),
            byte: 0,
            chr: 0,
        }
    }

    fn at(&mut self, byte: usize) -> usize {
        if self.ascii {
            return byte;
        }
        if byte < self.byte {
            self.byte = 0;
            self.chr = 0;
        }
        self.chr += count_chars(&self.b[self.byte..byte]);
        self.byte = byte;
        self.chr
    }
}

/// The piece `[s, e)` (byte offsets) of the Python string `src`: decoded from its UTF-8 if
/// the text `decodes()`, else cut with PyUnicode_Substring (a copy of the right width, exact
/// for lone surrogates too).
fn make_str<'py>(
    py: Python<'py>,
    src: &Bound<'py, PyString>,
    cur: &mut CharCursor<'_>,
    (s, e): (usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
    if cur.decodes {
        return decode_str(py, cur.b, (s, e));
    }
    let (cs, ce) = (cur.at(s), cur.at(e));
    unsafe {
        let p =
            ffi::PyUnicode_Substring(src.as_ptr(), cs as ffi::Py_ssize_t, ce as ffi::Py_ssize_t);
        Bound::from_owned_ptr_or_err(py, p)
    }
}

/// Pauses Python's cyclic GC while a batch's results are built (restored on drop, errors
/// included). The results hold only str, bool and None, so no cycle can form; without the
/// pause every 700 new containers start a collection that walks all the young lists again.
struct GcPause(bool);

impl GcPause {
    fn new(_py: Python<'_>) -> Self {
        GcPause(unsafe { ffi::PyGC_Disable() } != 0)
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if self.0 {
            unsafe { ffi::PyGC_Enable() };
        }
    }
}

fn use_parallel(texts: &[Text<'_>], parallel: Option<bool>) -> bool {
    parallel.unwrap_or_else(|| {
        texts.len() > 1
            && rayon::current_num_threads() > 1
            && texts.iter().map(|t| t.bytes().len()).sum::<usize>() >= PARALLEL_MIN_BYTES
    })
}

fn map_texts<T: Send>(
    texts: &[Text<'_>],
    parallel: bool,
    f: impl Fn(&[u8]) -> T + Sync + Send,
) -> Vec<T> {
    if parallel {
        texts.par_iter().map(|t| f(t.bytes())).collect()
    } else {
        texts.iter().map(|t| f(t.bytes())).collect()
    }
}

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

impl AsRef<[u8]> for Text<'_> {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// The sentences of a batch, each distinct one once: `ids` numbers every occurrence (in
/// order) by its distinct sentence, `counts` has the number of sentences per text, and
/// `firsts` the text and span where each distinct sentence first occurs (code point offsets
/// for texts with lone surrogates, byte offsets else: see `Text::decodes`).
struct Unique {
    ids: Vec<u32>,
    counts: Vec<usize>,
    firsts: Vec<(usize, usize, usize)>,
}

/// Whether every repeated sentence must be found (`split_unique`), or finding most of them is
/// enough (lists of sentences, where sharing one str for equal sentences only saves time).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dedupe {
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
fn split_dedup<P: Send>(
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

/// Tags and the think span's sentences (completion offsets) of one completion.
fn parse_split(split: Splitter, b: &[u8], v: &mut Vec<(usize, usize)>) -> tags::ParsedSpans {
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

impl Unique {
    /// The distinct sentences as Python strings, cut from their first text.
    fn strings<'py>(
        &self,
        py: Python<'py>,
        items: &[Bound<'py, PyString>],
        texts: &[Text<'_>],
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.firsts
            .iter()
            .map(|&(i, cs, ce)| unsafe {
                if texts[i].decodes() {
                    return decode_str(py, texts[i].bytes(), (cs, ce));
                }
                let p = ffi::PyUnicode_Substring(
                    items[i].as_ptr(),
                    cs as ffi::Py_ssize_t,
                    ce as ffi::Py_ssize_t,
                );
                Bound::from_owned_ptr_or_err(py, p)
            })
            .collect()
    }

    /// One list of sentences per text; a repeated sentence is the same str object. The
    /// first list to hold a string takes over the reference `strings` held (every distinct
    /// string occurs at least once), so only repeats cost an incref.
    fn lists<'py>(
        &self,
        py: Python<'py>,
        strings: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        struct Refs(Vec<*mut ffi::PyObject>, Vec<bool>);
        impl Drop for Refs {
            // On an error, the references not handed to a list yet.
            fn drop(&mut self) {
                for (&p, &taken) in self.0.iter().zip(&self.1) {
                    if !taken {
                        unsafe { ffi::Py_DecRef(p) };
                    }
                }
            }
        }
        let n_strings = strings.len();
        let mut refs = Refs(
            strings.into_iter().map(Bound::into_ptr).collect(),
            vec![false; n_strings],
        );
        unsafe {
            let outer = Bound::from_owned_ptr_or_err(
                py,
                ffi::PyList_New(self.counts.len() as ffi::Py_ssize_t),
            )?
            .cast_into_unchecked::<PyList>();
            let mut pos = 0;
            for (t, &n) in self.counts.iter().enumerate() {
                let list = ffi::PyList_New(n as ffi::Py_ssize_t);
                if list.is_null() {
                    return Err(PyErr::fetch(py));
                }
                for (k, &id) in self.ids[pos..pos + n].iter().enumerate() {
                    let id = id as usize;
                    let obj = refs.0[id];
                    if refs.1[id] {
                        ffi::Py_IncRef(obj);
                    } else {
                        refs.1[id] = true;
                    }
                    // PyList_SetItem steals the reference; it cannot fail on a fresh list.
                    ffi::PyList_SetItem(list, k as ffi::Py_ssize_t, obj);
                }
                ffi::PyList_SetItem(outer.as_ptr(), t as ffi::Py_ssize_t, list);
                pos += n;
            }
            Ok(outer)
        }
    }
}

fn i64_bytes<'py>(
    py: Python<'py>,
    values: impl ExactSizeIterator<Item = usize>,
) -> Bound<'py, PyBytes> {
    let mut v = Vec::with_capacity(values.len() * 8);
    for x in values {
        v.extend_from_slice(&(x as i64).to_ne_bytes());
    }
    PyBytes::new(py, &v)
}

/// The sentences of each text, deduplicated over the whole batch: `(distinct, ids, counts)`
/// with `distinct` the distinct sentences in order of first occurrence (list of str), `ids`
/// the index into `distinct` of every sentence occurrence in order and `counts` the number of
/// sentences of each text (both native-endian int64 bytes, for `numpy.frombuffer`). Only the
/// distinct sentences become Python objects.
#[pyfunction]
#[pyo3(signature = (texts, mode="paper", *, parallel=None))]
fn split_unique<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    mode: &str,
    parallel: Option<bool>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let split = splitter(mode)?;
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    let par = use_parallel(&texts, parallel);
    let (_, uniq) = py.detach(|| split_dedup(&texts, par, Dedupe::All, split));
    let strings = uniq.strings(py, &items, &texts)?;
    Ok((
        PyList::new(py, strings)?,
        i64_bytes(py, uniq.ids.iter().map(|&i| i as usize)),
        i64_bytes(py, uniq.counts.iter().copied()),
    ))
}

/// For each text: (format_ok, think or None, answer or None), as the release's regexes find
/// them; or, with `cls`, an instance of that frozen slots dataclass (erv's `Parsed`) per text.
#[pyfunction]
#[pyo3(signature = (texts, *, parallel=None, cls=None))]
fn parse_completions<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    parallel: Option<bool>,
    cls: Option<&Bound<'py, PyType>>,
) -> PyResult<Bound<'py, PyList>> {
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    let par = use_parallel(&texts, parallel);
    let spans = py.detach(|| map_texts(&texts, par, tags::parse));
    let _gc = GcPause::new(py);
    PyList::new(py, parsed_objects(py, &spans, &texts, &items, cls)?)
}

/// The Python side of each text's parse: a `(format_ok, think, answer)` tuple, or with `cls`
/// an instance of that frozen slots dataclass; think and answer are cut from the original str.
fn parsed_objects<'py>(
    py: Python<'py>,
    spans: &[tags::ParsedSpans],
    texts: &[Text<'_>],
    items: &[Bound<'py, PyString>],
    cls: Option<&Bound<'py, PyType>>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let none = py.None().into_bound(py);
    let names = [
        intern!(py, "format_ok"),
        intern!(py, "think"),
        intern!(py, "answer"),
    ];
    spans
        .iter()
        .zip(texts)
        .zip(items)
        .map(|((p, t), src)| {
            let mut cur = CharCursor::new(t);
            let think = match p.think {
                Some(sp) => make_str(py, src, &mut cur, sp)?,
                None => none.clone(),
            };
            let answer = match p.answer {
                Some(sp) => make_str(py, src, &mut cur, sp)?,
                None => none.clone(),
            };
            let ok = pyo3::types::PyBool::new(py, p.format_ok)
                .to_owned()
                .into_any();
            match cls {
                None => Ok(PyTuple::new(py, [ok, think, answer])?.into_any()),
                Some(cls) => new_frozen(py, cls, &names, [ok, think, answer]),
            }
        })
        .collect()
}

/// `parse_completions` and the sentences of each think span in one call: the think text is
/// split where it lies in the completion, so it is never re-read from a new Python str.
#[pyfunction]
#[pyo3(signature = (texts, mode="paper", *, parallel=None, cls=None))]
fn parse_and_split<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    mode: &str,
    parallel: Option<bool>,
    cls: Option<&Bound<'py, PyType>>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let split = splitter(mode)?;
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    let par = use_parallel(&texts, parallel);
    let (results, uniq) = py.detach(|| {
        split_dedup(&texts, par, Dedupe::WhileWorthIt, |b, v| {
            parse_split(split, b, v)
        })
    });
    let _gc = GcPause::new(py);
    let sentences = uniq.lists(py, uniq.strings(py, &items, &texts)?)?;
    let parsed = parsed_objects(py, &results, &texts, &items, cls)?;
    Ok((PyList::new(py, parsed)?, sentences))
}

/// `parse_completions` and `split_unique` of the think spans in one pass over the batch:
/// `(parsed, distinct, ids, counts)`, with `distinct`, `ids` and `counts` as `split_unique`
/// returns them for the explanations (no think block: no sentences).
#[pyfunction]
#[pyo3(signature = (texts, mode="paper", *, parallel=None, cls=None))]
#[allow(clippy::type_complexity)]
fn parse_and_split_unique<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    mode: &str,
    parallel: Option<bool>,
    cls: Option<&Bound<'py, PyType>>,
) -> PyResult<(
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
)> {
    let split = splitter(mode)?;
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    let par = use_parallel(&texts, parallel);
    let (results, uniq) =
        py.detach(|| split_dedup(&texts, par, Dedupe::All, |b, v| parse_split(split, b, v)));
    let _gc = GcPause::new(py);
    let strings = uniq.strings(py, &items, &texts)?;
    let parsed = parsed_objects(py, &results, &texts, &items, cls)?;
    Ok((
        PyList::new(py, parsed)?,
        PyList::new(py, strings)?,
        i64_bytes(py, uniq.ids.iter().map(|&i| i as usize)),
        i64_bytes(py, uniq.counts.iter().copied()),
    ))
}

/// An instance of a frozen slots dataclass with its fields set, skipping the generated
/// `__init__` (whose `object.__setattr__` calls cost more than the whole parse). Generic
/// attribute setting goes straight to the slot descriptors, past the frozen `__setattr__`.
fn new_frozen<'py, const N: usize>(
    py: Python<'py>,
    cls: &Bound<'py, PyType>,
    names: &[&Bound<'py, PyString>; N],
    values: [Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyAny>> {
    unsafe {
        let obj = Bound::from_owned_ptr_or_err(
            py,
            ffi::PyType_GenericNew(
                cls.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ),
        )?;
        for (name, value) in names.iter().zip(values) {
            if ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(obj)
    }
}

/// A splitter: appends the byte spans of the sentences of a text.
type Splitter = fn(&[u8], &mut Vec<(usize, usize)>);

fn splitter(mode: &str) -> PyResult<Splitter> {
    match mode {
        "paper" => Ok(paper::split),
        "pragmatic" => Ok(pragmatic::split),
        _ => Err(PyValueError::new_err(format!(
            "unknown segmentation mode {mode:?}; expected 'paper' or 'pragmatic'"
        ))),
    }
}

/// The sentences of each text, one list per text.
#[pyfunction]
#[pyo3(signature = (texts, mode="paper", *, parallel=None))]
fn split_sentences_batch<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    mode: &str,
    parallel: Option<bool>,
) -> PyResult<Bound<'py, PyList>> {
    let split = splitter(mode)?;
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    let par = use_parallel(&texts, parallel);
    let (_, uniq) = py.detach(|| split_dedup(&texts, par, Dedupe::WhileWorthIt, split));
    let _gc = GcPause::new(py);
    uniq.lists(py, uniq.strings(py, &items, &texts)?)
}

/// Byte offsets instead of strings: for each text a flat list [start0, end0, start1, ...] of
/// sentence spans in its UTF-8 ("surrogatepass") encoding. For callers that only need counts
/// or positions, and for benchmarks of the scan alone.
#[pyfunction]
#[pyo3(signature = (texts, mode="paper", *, parallel=None))]
fn sentence_spans<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    mode: &str,
    parallel: Option<bool>,
) -> PyResult<Vec<Vec<usize>>> {
    map_sentences(py, texts, mode, parallel, |v| {
        v.into_iter().flat_map(|(s, e)| [s, e]).collect()
    })
}

/// `f` of each text's sentence byte spans, computed with the GIL released.
fn map_sentences<T: Send>(
    py: Python<'_>,
    texts: &Bound<'_, PyList>,
    mode: &str,
    parallel: Option<bool>,
    f: impl Fn(Vec<(usize, usize)>) -> T + Sync,
) -> PyResult<Vec<T>> {
    let split = splitter(mode)?;
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    let par = use_parallel(&texts, parallel);
    Ok(py.detach(|| {
        map_texts(&texts, par, |b| {
            let mut v = Vec::new();
            split(b, &mut v);
            f(v)
        })
    }))
}

/// Number of sentences in each text, without building them (the scan alone: what the rayon
/// path speeds up, and the N of Algorithm 1 when only counts are needed).
#[pyfunction]
#[pyo3(signature = (texts, mode="paper", *, parallel=None))]
fn sentence_counts<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    mode: &str,
    parallel: Option<bool>,
) -> PyResult<Vec<usize>> {
    map_sentences(py, texts, mode, parallel, |v| v.len())
}

/// Number of `<` bytes in all texts, found with memchr: the floor a tag scan is measured against.
#[pyfunction]
fn memchr_scan(py: Python<'_>, texts: &Bound<'_, PyList>) -> PyResult<usize> {
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    Ok(py.detach(|| {
        texts
            .iter()
            .map(|t| memchr::memchr_iter(b'<', t.bytes()).count())
            .sum()
    }))
}

/// Tag parsing without building Python objects: (format_ok count, think count, answer count).
/// Benchmarks compare it with `memchr_scan` over the same bytes.
#[pyfunction]
fn tag_scan(py: Python<'_>, texts: &Bound<'_, PyList>) -> PyResult<(usize, usize, usize)> {
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    Ok(py.detach(|| {
        texts
            .iter()
            .map(|t| tags::parse(t.bytes()))
            .fold((0, 0, 0), |(f, t, a), p| {
                (
                    f + p.format_ok as usize,
                    t + p.think.is_some() as usize,
                    a + p.answer.is_some() as usize,
                )
            })
    }))
}

/// Label sets of Algorithm 1 for a C-contiguous float32 matrix of probabilities without NaN
/// (rows = sentences): `(sets, neutral)` as bytes of 0/1, rows x labels and rows (for
/// `numpy.frombuffer(..., bool)`). See `labelsets.rs`; the GIL is released meanwhile.
#[pyfunction]
#[pyo3(signature = (probs, tau, k, neutral_idx=None, release_rule=true))]
fn label_sets<'py>(
    py: Python<'py>,
    probs: PyBuffer<f32>,
    tau: f64,
    k: usize,
    neutral_idx: Option<usize>,
    release_rule: bool,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let shape = probs.shape();
    if shape.len() != 2 || !probs.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "label_sets: probs must be a C-contiguous 2-D float32 array, got shape {shape:?}"
        )));
    }
    let (rows, width) = (shape[0], shape[1]);
    if k == 0 || (width == 0 && rows > 0) || neutral_idx.is_some_and(|n| n >= width) {
        return Err(PyValueError::new_err(format!(
            "label_sets: k = {k} and neutral_idx = {neutral_idx:?} do not fit {width} labels"
        )));
    }
    let values = probs.to_vec(py)?;
    let (mut sets, mut neutral) = (vec![0u8; rows * width], vec![0u8; rows]);
    py.detach(|| {
        labelsets::label_sets(
            &values,
            width,
            tau as f32,
            k,
            neutral_idx,
            release_rule,
            &mut sets,
            &mut neutral,
        )
    });
    Ok((PyBytes::new(py, &sets), PyBytes::new(py, &neutral)))
}

/// The word lists pragmatic mode uses (for the twin test that keeps Python's copy in step).
#[pyfunction]
fn pragmatic_lists() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("titles", pragmatic::TITLES.to_vec()),
        ("never_end", pragmatic::NEVER_END.to_vec()),
        ("number_abbr", pragmatic::NUMBER_ABBR.to_vec()),
        ("sometimes_end", pragmatic::SOMETIMES_END.to_vec()),
        ("starters", pragmatic::STARTERS.to_vec()),
        ("time_qualifiers", pragmatic::TIME_QUALIFIERS.to_vec()),
        ("fronting", pragmatic::FRONTING.to_vec()),
        ("exclamation_words", pragmatic::EXCLAMATION_WORDS.to_vec()),
    ]
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(parse_completions, m)?)?;
    m.add_function(wrap_pyfunction!(split_sentences_batch, m)?)?;
    m.add_function(wrap_pyfunction!(parse_and_split, m)?)?;
    m.add_function(wrap_pyfunction!(split_unique, m)?)?;
    m.add_function(wrap_pyfunction!(parse_and_split_unique, m)?)?;
    m.add_function(wrap_pyfunction!(label_sets, m)?)?;
    m.add_function(wrap_pyfunction!(sentence_spans, m)?)?;
    m.add_function(wrap_pyfunction!(sentence_counts, m)?)?;
    m.add_function(wrap_pyfunction!(memchr_scan, m)?)?;
    m.add_function(wrap_pyfunction!(tag_scan, m)?)?;
    m.add_function(wrap_pyfunction!(pragmatic_lists, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
