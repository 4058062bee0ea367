//! Paper split alone vs split + batch deduplication (what `split_unique` and the batch
//! splitters add): `cargo run --release --example dedup_speed -- explanations.bin`
//! (NUL-separated texts, e.g. the explanations of `benchmarks/gen_batch.py`).
use _native::{paper, Dedup};
use std::time::Instant;

fn best<F: FnMut() -> usize>(mut f: F) -> (f64, usize) {
    let mut r = 0;
    let t = (0..50)
        .map(|_| {
            let t = Instant::now();
            r = f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    (t * 1e3, r)
}

fn main() {
    let data = std::fs::read(std::env::args().nth(1).expect("a NUL-separated file")).unwrap();
    let texts: Vec<&[u8]> = data.split(|&c| c == 0).collect();
    let (scan, n) = best(|| {
        let mut total = 0;
        for t in &texts {
            let mut v = Vec::new();
            paper::split(t, &mut v);
            total += v.len();
        }
        total
    });
    let (old_scan, _) = best(|| {
        let mut total = 0;
        for t in &texts {
            let mut v = Vec::new();
            paper::split_memchr(t, &mut v);
            total += v.len();
        }
        total
    });
    let (both, u) = best(|| {
        let mut d = Dedup::default();
        let mut ids = Vec::with_capacity(n);
        for (i, t) in texts.iter().enumerate() {
            let mut v = Vec::new();
            paper::split(t, &mut v);
            d.add(&texts, i, &v, &mut ids);
        }
        d.len()
    });
    println!(
        "{n} sentences, {u} distinct: split {scan:.3} ms (memchr scan {old_scan:.3} ms), \
         split + dedup {both:.3} ms"
    );
}
