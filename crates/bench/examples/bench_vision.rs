//! Times CLIP ViT-L/14-336 (random weights) through vlm's tower and compressors, and candle-transformers'
//! `ClipVisionTransformer` on the same weights. `cargo run --release -p vlmscale-bench --features peers --example bench_vision [V] [repeats]`.
//! (candle-transformers is a dev-dependency of `vlm`, hence an example rather than library code.)
use bench::vision::{time_it, tower_gflop, VisionBench};
use candle_core::{Device, Module};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};

fn main() -> anyhow_free::Result {
    let args: Vec<String> = std::env::args().collect();
    let v: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(36);
    let repeats: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let bench = VisionBench::new(4096, &Device::Cpu);
    let rows = bench.run(v, repeats)?;
    // Same VarMap: candle-transformers picks up the weights our tower created (and makes post_layernorm).
    let ct = ClipVisionTransformer::new(
        bench.var_builder().pp("vision_model"),
        &ClipVisionConfig::clip_vit_large_patch14_336(),
    )?;
    let pixels = bench.pixels()?;
    let n = bench.config().num_hidden_layers;
    let reference = time_it(
        &format!("candle-transformers ClipVisionTransformer, {n} blocks"),
        tower_gflop(bench.config(), n),
        repeats,
        || ct.forward(&pixels).map(|_| ()).map_err(engine::Error::from),
    )?;
    for r in rows.iter().chain(std::iter::once(&reference)) {
        println!("{r}");
    }
    Ok(())
}

mod anyhow_free {
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}
