//! Times the 0.5B decoder's prefill (and a few decode steps) with its matrices in bf16, q8_0 and q4_0,
//! one set of random weights, the formats alternating round after round so that a noisy CPU slows them
//! alike: `cargo run --release -p vlmscale-bench --example bench_prefill_formats [-- ROUNDS [L...]]`
//! (default 7 rounds, L = 51 and 626 tokens). Prints best and median ms per format and length, and
//! each quantised format's ratio to bf16 (best / median). A benchmark, not a test.
use candle_core::{DType, Device};
use candle_nn::VarMap;
use models::decoder::Decoder;
use quant::{QuantFormat, WeightFormat};
use std::time::Instant;

fn main() -> engine::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rounds = args.first().copied().unwrap_or(7).max(1);
    let lens: Vec<usize> = if args.len() > 1 { args[1..].to_vec() } else { vec![51, 626] };
    kernels::threads::pin_rayon_threads();
    kernels::memory::keep_freed_buffers();
    let cfg = bench::infer::qwen15_config("0.5b")?;
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    Decoder::new(&cfg, candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let formats = [
        WeightFormat::Dense(DType::BF16),
        WeightFormat::Quant(QuantFormat::Q8_0),
        WeightFormat::Quant(QuantFormat::Q4_0),
    ];
    let mut decoders = formats
        .iter()
        .map(|f| {
            let mut d = Decoder::new(&cfg, bench::vision::frozen(&varmap, &dev))?;
            d.convert_weights(*f)?;
            Ok(d)
        })
        .collect::<engine::Result<Vec<_>>>()?;
    varmap.data().lock().expect("varmap").clear();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    // times[len][format]: prefill ms per round.
    let mut times = vec![vec![Vec::new(); formats.len()]; lens.len()];
    for round in 0..=rounds {
        for (li, &l) in lens.iter().enumerate() {
            let embeds = kernels::random::randn(&mut rng, 1.0, (1, l, cfg.hidden_size), DType::F32, &dev)?;
            for (fi, dec) in decoders.iter_mut().enumerate() {
                dec.clear_kv_cache();
                let t = Instant::now();
                let h = dec.forward_embeds(&embeds, 0)?;
                dec.lm_head(&h.narrow(1, l - 1, 1)?)?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if round > 0 {
                    times[li][fi].push(ms); // round 0 is the warm-up
                }
            }
        }
    }
    let stats = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    for (li, &l) in lens.iter().enumerate() {
        let (bb, bm) = stats(&times[li][0]);
        for (fi, f) in formats.iter().enumerate() {
            let (b, m) = stats(&times[li][fi]);
            println!(
                "prefill {l:>4} tokens  {:<5} best {b:>8.1} ms  median {m:>8.1} ms  / bf16 {:.3} / {:.3}",
                f.name(),
                b / bb,
                m / bm
            );
        }
    }
    Ok(())
}
