//! Times the decoder at the Qwen-1.5-0.5B shape (random weights in memory): prefill of `L` tokens and
//! decode steps after it, through each available [`kernels::matmul`] backend back to back:
//! `cargo run --release -p vlmscale-bench --features vlmscale-kernels/openblas --example bench_decoder [L] [decode_steps]`
//! (environment: `BF16_ONLY=1` times only the bf16-weight path, `BENCH_REPS=R` repeats each R times).
//! A benchmark, not a test.
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use kernels::matmul::{set_matmul_backend, MatmulBackend};
use models::decoder::Decoder;
use std::time::Instant;

fn main() -> engine::Result<()> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (l, steps) = (args.first().copied().unwrap_or(626), args.get(1).copied().unwrap_or(8));
    // As `vlmscale` does before inference: rayon's pool sized like candle's, freed buffers kept.
    kernels::threads::pin_rayon_threads();
    kernels::memory::keep_freed_buffers();
    let cfg = bench::infer::qwen15_config("0.5b")?;
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    Decoder::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?; // creates the weights
                                                                             // Timed on detached weights: modules on the VarMap's variables would record the autograd graph.
    let mut dec = Decoder::new(&cfg, bench::vision::frozen(&varmap, &dev))?;
    let embeds = kernels::random::randn(&mut rng, 1.0, (1, l, cfg.hidden_size), candle_core::DType::F32, &dev)?;
    let mut backends = vec![MatmulBackend::Candle];
    if set_matmul_backend(MatmulBackend::OpenBlas).is_ok() {
        backends.push(MatmulBackend::OpenBlas);
    }
    let only_bf16 = std::env::var("BF16_ONLY").is_ok();
    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let mut runs: Vec<(MatmulBackend, bool)> =
        if only_bf16 { vec![] } else { backends.iter().map(|b| (*b, false)).collect() };
    runs.push((*backends.last().unwrap(), true));
    for (backend, bf16) in runs {
        set_matmul_backend(backend)?;
        if bf16 {
            dec.convert_weights(DType::BF16)?;
            varmap.data().lock().unwrap().clear();
        }
        for _ in 0..reps {
            dec.clear_kv_cache();
            let t = Instant::now();
            let h = dec.forward_embeds(&embeds, 0)?;
            dec.lm_head(&h.narrow(1, l - 1, 1)?)?;
            let prefill = t.elapsed().as_secs_f64();
            let step = kernels::random::randn(&mut rng, 1.0, (1, 1, cfg.hidden_size), candle_core::DType::F32, &dev)?;
            let t = Instant::now();
            for i in 0..steps {
                let h = dec.forward_embeds(&step, l + i)?;
                dec.lm_head(&h)?;
            }
            let decode = t.elapsed().as_secs_f64() / steps as f64;
            // Layer weights (embedding table excluded: a lookup in prefill), 2 FLOP per weight per token.
            let gflop = 2.0 * (cfg.num_parameters() - cfg.vocab_size * cfg.hidden_size) as f64 * l as f64 / 1e9;
            println!(
                "{backend:?}{}\tprefill {l} tokens {prefill:>7.3} s ({:>5.1} GFLOP/s, layer matmuls)\tdecode {:>6.1} ms/token",
                if bf16 { " bf16 weights" } else { "" },
                gflop / prefill,
                decode * 1e3
            );
        }
    }
    Ok(())
}
