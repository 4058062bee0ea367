//! `erv_plugins._native`: the reward hot path (tag parsing, sentence segmentation).
//!
//! The boundary is coarse: one call per batch. Texts are borrowed as UTF-8 (zero-copy for
//! ASCII strings), the GIL is released while spans are computed (in parallel with rayon for
//! large batches), and Python strings are cut from the original str at the end. Strings holding
//! lone surrogates are scanned in their "surrogatepass" encoding and cut by code point offsets,
//! so every Python str gets an exact answer and nothing panics across the boundary.
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};
use rayon::prelude::*;

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
    byte: usize,
    chr: usize,
}

impl<'t> CharCursor<'t> {
    fn new(text: &'t Text<'_>) -> Self {
        CharCursor {
            b: text.bytes(),
            ascii: text.ascii,
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

/// The piece `[s, e)` (byte offsets) of the Python string `src`, cut with PyUnicode_Substring:
/// a copy of the right width, with no UTF-8 decoding, and exact for lone surrogates too.
fn make_str<'py>(
    py: Python<'py>,
    src: &Bound<'py, PyString>,
    cur: &mut CharCursor<'_>,
    (s, e): (usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
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
    let none = py.None().into_bound(py);
    let names = [
        intern!(py, "format_ok"),
        intern!(py, "think"),
        intern!(py, "answer"),
    ];
    let out = spans
        .iter()
        .zip(&texts)
        .zip(&items)
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
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, out)
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
    let results = py.detach(|| {
        map_texts(&texts, par, |b| {
            let p = tags::parse(b);
            let mut v = Vec::new();
            if let Some((s, e)) = p.think {
                split(&b[s..e], &mut v);
                for sp in &mut v {
                    *sp = (sp.0 + s, sp.1 + s);
                }
            }
            (p, v)
        })
    });
    let _gc = GcPause::new(py);
    let none = py.None().into_bound(py);
    let names = [
        intern!(py, "format_ok"),
        intern!(py, "think"),
        intern!(py, "answer"),
    ];
    let mut parsed = Vec::with_capacity(results.len());
    let mut sentences = Vec::with_capacity(results.len());
    for (((p, v), t), src) in results.iter().zip(&texts).zip(&items) {
        let mut cur = CharCursor::new(t);
        let think = match p.think {
            Some(sp) => make_str(py, src, &mut cur, sp)?,
            None => none.clone(),
        };
        let strs = v
            .iter()
            .map(|&sp| make_str(py, src, &mut cur, sp))
            .collect::<PyResult<Vec<_>>>()?;
        sentences.push(PyList::new(py, strs)?);
        let answer = match p.answer {
            Some(sp) => make_str(py, src, &mut cur, sp)?,
            None => none.clone(),
        };
        let ok = pyo3::types::PyBool::new(py, p.format_ok)
            .to_owned()
            .into_any();
        parsed.push(match cls {
            None => PyTuple::new(py, [ok, think, answer])?.into_any(),
            Some(cls) => new_frozen(py, cls, &names, [ok, think, answer])?,
        });
    }
    Ok((PyList::new(py, parsed)?, PyList::new(py, sentences)?))
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
    let spans = py.detach(|| {
        map_texts(&texts, par, |b| {
            let mut v = Vec::new();
            split(b, &mut v);
            v
        })
    });
    let _gc = GcPause::new(py);
    let out = spans
        .iter()
        .zip(&texts)
        .zip(&items)
        .map(|((v, t), src)| {
            let mut cur = CharCursor::new(t);
            let strs = v
                .iter()
                .map(|&sp| make_str(py, src, &mut cur, sp))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, strs)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, out)
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
    let split = splitter(mode)?;
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    let par = use_parallel(&texts, parallel);
    Ok(py.detach(|| {
        map_texts(&texts, par, |b| {
            let mut v = Vec::new();
            split(b, &mut v);
            v.into_iter().flat_map(|(s, e)| [s, e]).collect()
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
    let split = splitter(mode)?;
    let items = strings_of(texts)?;
    let texts = texts_of(&items)?;
    let par = use_parallel(&texts, parallel);
    Ok(py.detach(|| {
        map_texts(&texts, par, |b| {
            let mut v = Vec::new();
            split(b, &mut v);
            v.len()
        })
    }))
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

/// The word lists pragmatic mode uses (for the twin test that keeps Python's copy in step).
#[pyfunction]
fn pragmatic_lists() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("titles", pragmatic::TITLES.to_vec()),
        ("never_end", pragmatic::NEVER_END.to_vec()),
        ("number_abbr", pragmatic::NUMBER_ABBR.to_vec()),
        ("sometimes_end", pragmatic::SOMETIMES_END.to_vec()),
        ("starters", pragmatic::STARTERS.to_vec()),
    ]
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(parse_completions, m)?)?;
    m.add_function(wrap_pyfunction!(split_sentences_batch, m)?)?;
    m.add_function(wrap_pyfunction!(parse_and_split, m)?)?;
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
