//! Replays the fuzz corpus on stable: every file under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the
//! same harness the cargo-fuzz target runs (`fuzz/src/lib.rs`, compiled here
//! as a module), so `cargo test` exercises the corpus without nightly or
//! libFuzzer. `UPDATE_FUZZ_SEEDS=1` writes the seed corpus built by
//! `harness::seeds` into `fuzz/corpus/`.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let path = e.path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_target_passes_its_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, run) in harness::TARGETS {
        let corpus = root.join("corpus").join(target);
        if std::env::var_os("UPDATE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(&corpus).unwrap();
            for (i, seed) in harness::seeds(target).iter().enumerate() {
                std::fs::write(corpus.join(format!("seed-{i:02}")), seed).unwrap();
            }
        }
        let mut files = inputs(&corpus);
        assert!(!files.is_empty(), "no corpus for fuzz target {target}");
        files.extend(inputs(&root.join("regressions").join(target)));
        for (name, data) in &files {
            let outcome = std::panic::catch_unwind(|| run(data));
            assert!(outcome.is_ok(), "fuzz target {target} fails on {name}");
        }
        println!("{target}: {} inputs replayed", files.len());
    }
}

#[test]
fn seeds_are_valid_inputs() {
    for (target, run) in harness::TARGETS {
        let seeds = harness::seeds(target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for seed in seeds {
            run(&seed);
        }
    }
}
