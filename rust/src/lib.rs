//! `erv_plugins._native`: the reward hot path (tag parsing, sentence segmentation, the label
//! sets of Algorithm 1). This file holds the module and its thin `#[pyfunction]` wrappers.
//!
//! The boundary is coarse: one call per batch. Texts are borrowed as bytes and the GIL is
//! released while they are scanned (`boundary.rs`); the sentences of a batch are numbered by
//! their bytes so each distinct one becomes one str (`dedup.rs`); the scanners are `tags.rs`,
//! `paper.rs` and `pragmatic.rs`. Bench-only exports (`bench.rs`) need the cargo feature
//! `bench`; the stub `python/erv_plugins/_native.pyi` names every export.
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyType};

#[cfg(feature = "bench")]
mod bench;
mod boundary;
mod dedup;
pub mod labelsets;
pub mod paper;
pub mod pragmatic;
pub mod tags;
#[cfg(test)]
mod tests;
pub mod ws;

use boundary::{
    i64_bytes, map_sentences, map_texts, parsed_objects, probs_matrix, splitter, strings_of,
    texts_of, use_parallel, GcPause,
};
pub use dedup::{fx_hash, Dedup};
use dedup::{parse_split, split_dedup, Dedupe};

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
    let (values, rows, width) = probs_matrix(py, &probs, k, neutral_idx)?;
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
    m.add_function(wrap_pyfunction!(pragmatic_lists, m)?)?;
    #[cfg(feature = "bench")]
    bench::register(m)?;
    Ok(())
}
