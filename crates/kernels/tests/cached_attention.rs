//! `kernels::attention::cached_attention` (causal) and `full_attention` (unmasked, a ViT's) against attention
//! written out in f64 from its definition (HF eager
//! attention: scores q·kᵀ·scale, causal mask for query i at position L' − L + i, softmax, ·v, query head h
//! reading key/value head h / (heads / kv_heads)), on every code path of the op: one decode row with
//! head_dim 64 and 128 (AVX-512 kernel), few rows, prefill blocks longer than one task's block, GQA, a
//! cache offset, and keys/values that are strided views of over-allocated buffers.
use candle_core::{Device, Tensor};

fn reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (nh, l, d): (usize, usize, usize),
    (nkv, lk): (usize, usize),
    scale: f64,
    causal: bool,
) -> Vec<f64> {
    let n_rep = nh / nkv;
    let past = lk.saturating_sub(l);
    let mut out = vec![0f64; l * nh * d];
    for h in 0..nh {
        let g = h / n_rep;
        for i in 0..l {
            let visible = if causal { past + i + 1 } else { lk };
            let qi = &q[(h * l + i) * d..][..d];
            let scores: Vec<f64> = (0..visible)
                .map(|j| (0..d).map(|c| qi[c] as f64 * k[(g * lk + j) * d + c] as f64).sum::<f64>() * scale)
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..d {
                out[(i * nh + h) * d + c] = (0..visible).map(|j| e[j] / z * v[(g * lk + j) * d + c] as f64).sum();
            }
        }
    }
    out
}

fn check(nh: usize, nkv: usize, l: usize, lk: usize, d: usize) {
    check_mode(nh, nkv, l, lk, d, true);
}

fn check_mode(nh: usize, nkv: usize, l: usize, lk: usize, d: usize, causal: bool) {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let dev = Device::Cpu;
    let scale = 1.0 / (d as f64).sqrt();
    let q = kernels::random::randn(&mut rng, 1.0, (1, nh, l, d), candle_core::DType::F32, &dev).unwrap();
    // Keys/values as the KV cache holds them: the first lk positions of a longer buffer.
    let cap = lk + 37;
    let kb = kernels::random::randn(&mut rng, 1.5, (1, nkv, cap, d), candle_core::DType::F32, &dev).unwrap();
    let vb = kernels::random::randn(&mut rng, 1.0, (1, nkv, cap, d), candle_core::DType::F32, &dev).unwrap();
    let (k, v) = (kb.narrow(2, 0, lk).unwrap(), vb.narrow(2, 0, lk).unwrap());
    assert_eq!(k.is_contiguous(), nkv == 1, "with several heads the view is strided");
    let got = if causal {
        kernels::attention::cached_attention(&q, &k, &v, scale)
    } else {
        kernels::attention::full_attention(&q, &k, &v, scale)
    }
    .unwrap();
    assert_eq!(got.dims(), &[1, l, nh * d]);
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let flat = |t: &Tensor| -> Vec<f32> { t.contiguous().unwrap().flatten_all().unwrap().to_vec1().unwrap() };
    let want = reference(&flat(&q), &flat(&k), &flat(&v), (nh, l, d), (nkv, lk), scale, causal);
    let peak = want.iter().fold(0f64, |m, x| m.max(x.abs()));
    let worst = got.iter().zip(&want).fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    assert!(
        worst <= 1e-5 * peak.max(1.0),
        "heads {nh}/{nkv}, L {l}, L' {lk}, d {d}: max error {worst:e} (peak {peak})"
    );
}

#[test]
fn decode_row_matches_the_definition() {
    for d in [64, 128, 16] {
        check(4, 2, 1, 1, d);
        check(4, 4, 1, 300, d);
        check(6, 2, 1, 77, d);
    }
}

#[test]
fn few_rows_after_a_cache_match_the_definition() {
    check(4, 2, 3, 40, 64);
    check(2, 1, 4, 4, 32);
}

#[test]
fn prefill_blocks_match_the_definition() {
    // 150 rows: three blocks of query rows, each seeing a different causal horizon.
    check(4, 2, 150, 150, 64);
    check(2, 2, 70, 100, 128);
    check(3, 1, 9, 9, 24);
}

#[test]
fn unmasked_attention_matches_the_definition() {
    // A ViT's: CLS + patches, every row sees every key; also more keys than queries and one query row.
    check_mode(4, 4, 145, 145, 64, false);
    check_mode(2, 1, 10, 30, 16, false);
    check_mode(4, 2, 1, 50, 64, false);
    check_mode(2, 2, 20, 5, 128, false);
}

#[test]
fn wrong_shapes_and_dtypes_are_errors() {
    let dev = Device::Cpu;
    let q = Tensor::zeros((1, 4, 2, 8), candle_core::DType::F32, &dev).unwrap();
    let k = Tensor::zeros((1, 3, 2, 8), candle_core::DType::F32, &dev).unwrap(); // 3 does not divide 4
    assert!(kernels::attention::cached_attention(&q, &k, &k, 0.5).is_err());
    let short = Tensor::zeros((1, 2, 1, 8), candle_core::DType::F32, &dev).unwrap(); // fewer keys than queries
    assert!(kernels::attention::cached_attention(&q, &short, &short, 0.5).is_err());
    let f64q = q.to_dtype(candle_core::DType::F64).unwrap();
    assert!(kernels::attention::cached_attention(&f64q, &k, &k, 0.5).is_err());
}
