//! Continuous batching's gain: decode throughput of `Decoder::decode_batch` over S sequences at once
//! against S = 1, at the Qwen-1.5-0.5B shape (random weights in memory, converted to bf16 or GGML
//! q8_0), each sequence prefilled with `context` tokens first:
//! `cargo run --release -p vlmscale-bench --example bench_decode_batch [context] [steps] [S...]`
//! (defaults: 115 = Q + V of a V = 64 query, 16 steps, S = 1 2 4 8; `WEIGHTS=q8_0` for 8-bit).
//! Prints ms per batched step, aggregate tokens/s and the speed-up over S = 1. A benchmark, not a test.
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use models::decoder::Decoder;
use std::time::Instant;

fn main() -> engine::Result<()> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let context = args.first().copied().unwrap_or(115);
    let steps = args.get(1).copied().unwrap_or(16);
    let batches: Vec<usize> = if args.len() > 2 { args[2..].to_vec() } else { vec![1, 2, 4, 8] };
    kernels::threads::pin_rayon_threads();
    kernels::memory::keep_freed_buffers();
    let cfg = bench::infer::qwen15_config("0.5b")?;
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    Decoder::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?; // creates the weights
    let mut dec = Decoder::new(&cfg, bench::vision::frozen(&varmap, &dev))?;
    let weights = std::env::var("WEIGHTS").unwrap_or_else(|_| "bf16".into());
    match weights.as_str() {
        "q8_0" => dec.convert_weights(quant::WeightFormat::Quant(quant::QuantFormat::Q8_0))?,
        "q4_0" => dec.convert_weights(quant::WeightFormat::Quant(quant::QuantFormat::Q4_0))?,
        _ => dec.convert_weights(DType::BF16)?,
    }
    varmap.data().lock().unwrap().clear();
    let max_s = batches.iter().copied().max().unwrap_or(1);
    // One prefilled cache per sequence (each its own random context).
    let mut prefilled = Vec::with_capacity(max_s);
    for _ in 0..max_s {
        let embeds = kernels::random::randn(&mut rng, 1.0, (1, context, cfg.hidden_size), DType::F32, &dev)?;
        dec.clear_kv_cache();
        dec.forward_embeds(&embeds, 0)?;
        prefilled.push(dec.take_kv_cache());
    }
    println!(
        "Qwen1.5-0.5B shape, {weights} weights, {} threads, context {context}, {steps} steps per S",
        kernels::threads::num_threads()
    );
    let mut base = None;
    for &s in &batches {
        let mut caches: Vec<_> = prefilled[..s].to_vec();
        let ids: Vec<u32> = (0..s as u32).map(|i| 100 + i).collect();
        dec.decode_batch(&ids, &mut caches)?; // warm-up
        let t = Instant::now();
        for _ in 0..steps {
            dec.decode_batch(&ids, &mut caches)?;
        }
        let step_ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
        let tokens_per_s = s as f64 * 1e3 / step_ms;
        let base_tps = *base.get_or_insert(tokens_per_s);
        println!(
            "S = {s:>2}: {step_ms:>7.1} ms per step, {tokens_per_s:>6.1} tokens/s aggregate, {:.2}× S = 1",
            tokens_per_s / base_tps
        );
    }
    Ok(())
}
