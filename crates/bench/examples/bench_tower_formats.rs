//! CLIP ViT-L/14-336 (random weights, the layers LLaVA reads) in bf16 and in q8_0, timed alternately
//! on one set of weights, so that a noisy shared CPU slows both formats alike: each round runs the
//! bf16 tower then the q8_0 one; the best and the median of the rounds are printed with their ratio.
//! `cargo run --release -p vlmscale-bench --example bench_tower_formats [rounds]` (default 7).
use bench::vision::VisionBench;
use candle_core::Device;
use engine::model::WeightFormat;
use models::vision::{extract_features, ClipVisionTower, FeatureLayers};
use models::Mode;
use quant::QuantFormat;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(7);
    let bench = VisionBench::new(1024, &Device::Cpu);
    let cfg = bench.config().clone();
    let layers = FeatureLayers::default();
    let depth = layers.depth(cfg.num_hidden_layers)?;
    ClipVisionTower::new_with_depth(&cfg, depth, Mode::Inference, bench.var_builder().pp("vision_model"))?;
    let formats = [WeightFormat::Dense(candle_core::DType::BF16), WeightFormat::Quant(QuantFormat::Q8_0)];
    let mut towers = vec![];
    for f in formats {
        let mut t = ClipVisionTower::new_with_depth(
            &cfg,
            depth,
            Mode::Inference,
            bench.frozen_var_builder().pp("vision_model"),
        )?;
        t.convert_weights(f)?;
        towers.push(t);
    }
    let pixels = bench.pixels()?;
    for t in &towers {
        extract_features(t, &pixels, &layers)?; // warm-up
    }
    let mut ms = vec![vec![]; towers.len()];
    for _ in 0..rounds {
        for (t, out) in towers.iter().zip(ms.iter_mut()) {
            let start = Instant::now();
            extract_features(t, &pixels, &layers)?;
            out.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (b, q) = (stats(&mut ms[0]), stats(&mut ms[1]));
    println!("vision tower ({depth} blocks), {rounds} alternating rounds, ms: best / median");
    println!("bf16  {:8.1} / {:8.1}", b.0, b.1);
    println!("q8_0  {:8.1} / {:8.1}", q.0, q.1);
    println!("q8_0 / bf16: best {:.3}, median {:.3}", q.0 / b.0, q.1 / b.1);
    Ok(())
}
