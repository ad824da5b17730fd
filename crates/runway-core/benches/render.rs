//! Criterion micro-benchmarks of the pure pipeline on the committed fixture
//! cases: the seed deployment's run launch (with a tag config) and a
//! celery-k8s step task. `make bench` prints the Python peer's numbers beside
//! these (benches/compare_render.py).
//!
//! Each case is measured as a service renders it (`render/...`: the launcher
//! config loaded once, as serve caches it per digest; a step's kwargs parsed
//! per task) and from the case document alone (`render_cold/...`: launcher
//! config processed on every render, as `runway render` does).

// A bench with a missing or broken fixture has nothing to measure: stop loudly.
#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;

use runway_core::render::{parse_case_text, prepare_case, render_case};

// The allocator the `runway` binary uses.
#[global_allocator]
static GLOBAL: runway_alloc::Mimalloc = runway_alloc::Mimalloc;

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/cases")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_case_text(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bench_render(c: &mut Criterion) {
    let env: BTreeMap<String, String> = BTreeMap::new();
    for (label, file) in [
        ("render/seed_run_with_tags", "seed_k8s_run_tags.json"),
        ("render/step", "step_basic.json"),
    ] {
        let case = load(file);
        let prepared = prepare_case(&case, &env).unwrap_or_else(|e| panic!("{file}: {e}"));
        prepared
            .render(&env)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        c.bench_function(label, |b| b.iter(|| prepared.render(&env)));
        let cold = label.replace("render/", "render_cold/");
        c.bench_function(&cold, |b| b.iter(|| render_case(&case, &env)));
    }
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
