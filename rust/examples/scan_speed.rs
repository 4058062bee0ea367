//! Raw scanner throughput without Python: `cargo run --release --example scan_speed`.
use _native::{paper, pragmatic, tags};
use std::time::Instant;

fn best<F: FnMut()>(mut f: F) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    if let Some(path) = std::env::args().nth(1) {
        // A NUL-separated batch (see benchmarks/gen_batch.py): per-text scans, as the module does.
        let data = std::fs::read(path).unwrap();
        let texts: Vec<&[u8]> = data.split(|&c| c == 0).collect();
        let mb = data.len() as f64 / 1e6;
        let mut v = Vec::with_capacity(1 << 16);
        let p = best(|| {
            for t in &texts {
                v.clear();
                paper::split(t, &mut v)
            }
        });
        let g = best(|| {
            for t in &texts {
                v.clear();
                pragmatic::split(t, &mut v)
            }
        });
        let s = best(|| {
            for t in &texts {
                std::hint::black_box(tags::parse(t));
            }
        });
        println!(
            "batch      paper {:8.0} MB/s  pragmatic {:8.0} MB/s  tags {:8.0} MB/s",
            mb / p,
            mb / g,
            mb / s
        );
        return;
    }
    let texts = [
        ("words", "hello world ".repeat(800_000)),
        ("sentences", "The man frowns at her. ".repeat(400_000)),
        (
            "abbrevs",
            "Dr. Smith met Mr. Lee at 5 p.m. He said \"No. Never.\" Then\u{2026} ".repeat(150_000),
        ),
    ];
    for (name, t) in &texts {
        let b = t.as_bytes();
        let mb = b.len() as f64 / 1e6;
        let mut v = Vec::with_capacity(1 << 20);
        let p = best(|| {
            v.clear();
            paper::split(b, &mut v)
        });
        let g = best(|| {
            v.clear();
            pragmatic::split(b, &mut v)
        });
        let s = best(|| {
            std::hint::black_box(tags::parse(b));
        });
        println!(
            "{name:10} paper {:8.0} MB/s  pragmatic {:8.0} MB/s  tags {:8.0} MB/s",
            mb / p,
            mb / g,
            mb / s
        );
    }
}
