//! The PyTorch peer of `vlmscale bench train` trains the identical model: on committed fixtures
//! (tiny `xs` LLM, d = 16 features, batch 4; seeded weights and batch exported by
//! `bench::train::BenchCase::export`), our training steps reproduce the losses and gradient norms that
//! `peers/torch_train_peer.py check` computed with transformers' `Qwen2ForCausalLM`,
//! `torch.nn.MultiheadAttention`, `clip_grad_norm_` and `torch.optim.AdamW` (stored in each fixture's
//! `expected.json`): before each of four AdamW steps, one pass or data-parallel over two threads, in f64 (to 1e-10 relative; the residue is f32 RoPE tables, computed in f32 on both sides) and f32 (to 1e-5).
//!
//! Regenerate (by hand; tests never run Python):
//! ```text
//! TORCH_PEER_FIXTURES=1 cargo test -p vlmscale-bench --test torch_peer -- --ignored write_fixtures
//! for c in quecc tokenpacker avgpool; do
//!   python3 peers/torch_train_peer.py check crates/bench/tests/fixtures/torch_peer/$c
//! done
//! ```
use std::path::PathBuf;

use bench::train::{load_exported, BenchCase, BenchConfig, BenchInput};
use candle_core::DType;

const COMPRESSORS: [&str; 3] = ["quecc", "tokenpacker", "avgpool"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_peer").join(name)
}

#[test]
#[ignore = "writes the committed fixtures; run by hand (see the module docs)"]
fn write_fixtures() {
    if std::env::var("TORCH_PEER_FIXTURES").is_err() {
        return;
    }
    for c in COMPRESSORS {
        let cfg = BenchConfig {
            compressor: c.into(),
            visual_tokens: 4,
            batch_size: 4,
            vision_dim: 16,
            grid: 8,
            seed: 3,
            threads: 1,
        };
        let input = BenchInput::new(&cfg).unwrap();
        let case = BenchCase::new(&input, "xs").unwrap();
        case.export(&input, &fixture(c)).unwrap();
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn training_steps_match_pytorch() {
    for c in COMPRESSORS {
        let dir = fixture(c);
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).expect("expected.json")).unwrap();
        let lr = expected["lr"].as_f64().unwrap();
        // One pass over the batch, and the data-parallel step (two workers, two rows each).
        for (name, dtype, tol, threads) in
            [("f64", DType::F64, 1e-10, 1), ("f32", DType::F32, 1e-5, 1), ("f64", DType::F64, 1e-10, 2)]
        {
            let (mut case, mut input) = load_exported(&dir, dtype).unwrap();
            input.config.threads = threads;
            let losses = expected[name]["losses"].as_array().unwrap();
            let norms = expected[name]["grad_norms"].as_array().unwrap();
            assert!(losses.len() >= 2);
            for (step, (want_loss, want_norm)) in losses.iter().zip(norms).enumerate() {
                let (want_loss, want_norm) = (want_loss.as_f64().unwrap(), want_norm.as_f64().unwrap());
                let (loss, norm) = case.step(&input, lr).unwrap();
                println!("{c} {name} ×{threads} step {step}: loss {loss:.12} (torch {want_loss:.12}), |g| {norm:.10} (torch {want_norm:.10})");
                assert!(rel(loss, want_loss) <= tol, "{c} {name} step {step}: loss {loss} vs PyTorch {want_loss}");
                assert!(rel(norm, want_norm) <= tol, "{c} {name} step {step}: grad norm {norm} vs PyTorch {want_norm}");
            }
        }
    }
}
