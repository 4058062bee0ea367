//! Raw scanner throughput without Python: `cargo run --release --example scan_speed`.
use _native::{paper, pragmatic, tags};
use std::time::Instant;

fn best<F: FnMut()>(mut f: F) -> f64 {
    (0..5).map(|_| { let t = Instant::now(); f(); t.elapsed().as_secs_f64() }).fold(f64::MAX, f64::min)
}

fn main() {
    let texts = [
        ("words", "hello world ".repeat(800_000)),
        ("sentences", "The man frowns at her. ".repeat(400_000)),
        ("abbrevs", "Dr. Smith met Mr. Lee at 5 p.m. He said \"No. Never.\" Then\u{2026} ".repeat(150_000)),
    ];
    for (name, t) in &texts {
        let b = t.as_bytes();
        let mb = b.len() as f64 / 1e6;
        let mut v = Vec::with_capacity(1 << 20);
        let p = best(|| { v.clear(); paper::split(b, &mut v) });
        let g = best(|| { v.clear(); pragmatic::split(b, &mut v) });
        let s = best(|| { std::hint::black_box(tags::parse(b)); });
        println!("{name:10} paper {:8.0} MB/s  pragmatic {:8.0} MB/s  tags {:8.0} MB/s", mb / p, mb / g, mb / s);
    }
}
