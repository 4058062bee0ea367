//! Exports for the benchmarks only (cargo feature `bench`; `scripts/setup` builds dev installs
//! with it, a product wheel is built without): floors the tag scan is measured against.
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::boundary::{strings_of, texts_of};
use crate::tags;

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

/// Adds the bench-only functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(memchr_scan, m)?)?;
    m.add_function(wrap_pyfunction!(tag_scan, m)?)?;
    Ok(())
}
