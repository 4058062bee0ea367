//! The PyO3 boundary: a batch of Python str borrowed as bytes, the GIL released while they
//! are scanned (with rayon above a size), and Python objects cut from the original str.
//!
//! Texts are borrowed as UTF-8 (zero-copy for ASCII strings). Strings holding lone surrogates
//! are scanned in their "surrogatepass" encoding and cut by code point offsets, so every Python
//! str gets an exact answer and nothing panics across the boundary.
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};
use rayon::prelude::*;

use crate::dedup::{Splitter, Unique};
use crate::{paper, pragmatic, tags};

/// Batches with at least this many bytes in all go to rayon when `parallel` is left to us
/// (about 0.3 ms of scanning: well above rayon's few microseconds of fork/join).
const PARALLEL_MIN_BYTES: usize = 1 << 18;

pub(crate) enum Buf<'a> {
    Utf8(&'a [u8]),
    /// Surrogatepass-encoded (a str holding lone surrogates).
    Wtf8(Vec<u8>),
}

pub(crate) struct Text<'a> {
    pub(crate) buf: Buf<'a>,
    /// One byte per code point: spans are code point offsets too, so sentences can be cut
    /// from the original str with PyUnicode_Substring (a memcpy, no UTF-8 decoding).
    pub(crate) ascii: bool,
}

impl Text<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.buf {
            Buf::Utf8(b) => b,
            Buf::Wtf8(v) => v,
        }
    }

    /// Pieces are made from the UTF-8 bytes (non-ASCII text without lone surrogates): CPython
    /// decodes an ASCII piece with a plain copy, where cutting a 2- or 4-byte-wide str would
    /// scan and narrow every character, and no code point offsets are needed.
    pub(crate) fn decodes(&self) -> bool {
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

pub(crate) fn texts_of<'a, 'py>(items: &'a [Bound<'py, PyString>]) -> PyResult<Vec<Text<'a>>> {
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

pub(crate) fn strings_of<'py>(texts: &Bound<'py, PyList>) -> PyResult<Vec<Bound<'py, PyString>>> {
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
pub(crate) fn count_chars(b: &[u8]) -> usize {
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
pub(crate) struct CharCursor<'t> {
    b: &'t [u8],
    ascii: bool,
    decodes: bool,
    byte: usize,
    chr: usize,
}

impl<'t> CharCursor<'t> {
    pub(crate) fn new(text: &'t Text<'_>) -> Self {
        CharCursor {
            b: text.bytes(),
            ascii: text.ascii,
            decodes: text.decodes(),
            byte: 0,
            chr: 0,
        }
    }

    pub(crate) fn at(&mut self, byte: usize) -> usize {
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
pub(crate) struct GcPause(bool);

impl GcPause {
    pub(crate) fn new(_py: Python<'_>) -> Self {
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

pub(crate) fn use_parallel(texts: &[Text<'_>], parallel: Option<bool>) -> bool {
    parallel.unwrap_or_else(|| {
        texts.len() > 1
            && rayon::current_num_threads() > 1
            && texts.iter().map(|t| t.bytes().len()).sum::<usize>() >= PARALLEL_MIN_BYTES
    })
}

pub(crate) fn map_texts<T: Send>(
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

impl AsRef<[u8]> for Text<'_> {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl Unique {
    /// The distinct sentences as Python strings, cut from their first text.
    pub(crate) fn strings<'py>(
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
    pub(crate) fn lists<'py>(
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

pub(crate) fn i64_bytes<'py>(
    py: Python<'py>,
    values: impl ExactSizeIterator<Item = usize>,
) -> Bound<'py, PyBytes> {
    let mut v = Vec::with_capacity(values.len() * 8);
    for x in values {
        v.extend_from_slice(&(x as i64).to_ne_bytes());
    }
    PyBytes::new(py, &v)
}

/// The Python side of each text's parse: a `(format_ok, think, answer)` tuple, or with `cls`
/// an instance of that frozen slots dataclass; think and answer are cut from the original str.
pub(crate) fn parsed_objects<'py>(
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

pub(crate) fn splitter(mode: &str) -> PyResult<Splitter> {
    match mode {
        "paper" => Ok(paper::split),
        "pragmatic" => Ok(pragmatic::split),
        _ => Err(PyValueError::new_err(format!(
            "unknown segmentation mode {mode:?}; expected 'paper' or 'pragmatic'"
        ))),
    }
}

/// `f` of each text's sentence byte spans, computed with the GIL released.
pub(crate) fn map_sentences<T: Send>(
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

/// The probabilities of `label_sets` as (values, rows, labels), checked: a C-contiguous 2-D
/// float32 buffer, and `k` / `neutral_idx` that fit its labels.
pub(crate) fn probs_matrix(
    py: Python<'_>,
    probs: &PyBuffer<f32>,
    k: usize,
    neutral_idx: Option<usize>,
) -> PyResult<(Vec<f32>, usize, usize)> {
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
    Ok((probs.to_vec(py)?, rows, width))
}
