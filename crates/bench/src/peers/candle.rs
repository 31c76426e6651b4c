//! The in-process candle-transformers peers, on the very weights our modules were timed with.
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use candle_transformers::models::qwen2::{Config, ModelForCausalLM};

use crate::infer::{llm_gflop, InferBench};
use crate::vision::{time_it, tower_gflop, BenchRow, VisionBench};

/// candle-transformers' `ClipVisionTransformer` on the bench's tower weights: one timed row.
///
/// Errors: candle errors from building or running the peer.
pub fn clip_vision(bench: &VisionBench, repeats: usize) -> engine::Result<BenchRow> {
    // Created on the VarMap (adds post_layernorm), timed on detached weights as ours.
    ClipVisionTransformer::new(
        bench.var_builder().pp("vision_model"),
        &ClipVisionConfig::clip_vit_large_patch14_336(),
    )?;
    let ct = ClipVisionTransformer::new(
        bench.frozen_var_builder().pp("vision_model"),
        &ClipVisionConfig::clip_vit_large_patch14_336(),
    )?;
    let pixels = bench.pixels()?;
    let n = bench.config().num_hidden_layers;
    time_it(
        &format!("peer: candle-transformers ClipVisionTransformer, {n} blocks"),
        tower_gflop(bench.config(), n),
        repeats,
        || ct.forward(&pixels).map(|_| ()).map_err(engine::Error::from),
    )
}

/// candle-transformers' own Qwen2 on the bench's f32 LLM weights: prefill (best of `repeats`) and
/// `decode_steps` decode steps per V, one printed line each.
///
/// Errors: candle errors from building or running the peer.
pub fn qwen2(
    bench: &InferBench,
    vs: &[usize],
    text_tokens: usize,
    repeats: usize,
    decode_steps: usize,
) -> engine::Result<()> {
    let cfg = bench.llm_config();
    let dev = Device::Cpu;
    let pc = Config {
        vocab_size: cfg.vocab_size,
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        num_key_value_heads: cfg.num_key_value_heads,
        max_position_embeddings: cfg.max_position_embeddings,
        sliding_window: cfg.max_position_embeddings,
        max_window_layers: cfg.num_hidden_layers,
        tie_word_embeddings: cfg.tie_word_embeddings,
        rope_theta: cfg.rope_theta,
        rms_norm_eps: cfg.rms_norm_eps,
        use_sliding_window: false,
        hidden_act: candle_nn::Activation::Silu,
    };
    // Same weights: our decoder created them in the shared VarMap (or they are created here); timed
    // on detached tensors, as ours.
    ModelForCausalLM::new(&pc, bench.llm_var_builder())?;
    let mut peer = ModelForCausalLM::new(&pc, bench.llm_frozen_var_builder())?;
    for &v in vs {
        let len = text_tokens + v;
        let ids = Tensor::zeros((1, len), DType::U32, &dev)?;
        let mut best = f64::INFINITY;
        for _ in 0..repeats.max(1) {
            peer.clear_kv_cache();
            let t = Instant::now();
            peer.forward(&ids, 0)?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        let step = Tensor::zeros((1, 1), DType::U32, &dev)?;
        let t = Instant::now();
        for i in 0..decode_steps {
            peer.forward(&step, len + i)?;
        }
        let decode = t.elapsed().as_secs_f64() * 1e3 / decode_steps.max(1) as f64;
        peer.clear_kv_cache();
        println!(
            "peer candle-transformers qwen2 f32 V {v:>4} Q+V {len:>4} | prefill {best:>8.1} ms | decode {decode:>6.1} ms/token | prefill {:>6.1} GFLOP/s",
            llm_gflop(cfg, len, 0) / (best / 1e3)
        );
    }
    Ok(())
}
