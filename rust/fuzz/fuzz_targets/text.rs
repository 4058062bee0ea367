//! Arbitrary bytes (not even valid UTF-8) through every scanner: no panic, and every span is
//! in bounds, ordered and non-empty.
#![no_main]
use _native::{paper, pragmatic, tags};
use libfuzzer_sys::fuzz_target;

fn check(b: &[u8], spans: &[(usize, usize)]) {
    let mut last = 0;
    for &(s, e) in spans {
        assert!(last <= s && s < e && e <= b.len());
        last = e;
    }
}

fuzz_target!(|b: &[u8]| {
    let p = tags::parse(b);
    for (s, e) in p.think.into_iter().chain(p.answer) {
        assert!(s <= e && e <= b.len());
    }
    let mut v = Vec::new();
    paper::split(b, &mut v);
    check(b, &v);
    v.clear();
    pragmatic::split(b, &mut v);
    check(b, &v);
});
