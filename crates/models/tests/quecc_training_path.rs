//! QueCC's training path (`Mode::Differentiable`: the fused depthwise conv and windowed attention of
//! `kernels::autograd`) computes what its inference path computes — the path held to the reference
//! implementation by the parity fixtures — at every V of the 8 × 8 grid, and each image of a batch
//! as if alone (no mixing across the batch).
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::compress::{Compressor, Quecc, QueccConfig};
use models::vision::VisionFeatures;
use models::Mode;

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn quecc_training_path_equals_the_inference_path_per_image_at_every_v() {
    let dev = Device::Cpu;
    let (g, d, h, b) = (8usize, 32usize, 24usize, 3usize);
    for v in [1usize, 4, 16, 64] {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7 + v as u64);
        let single = kernels::random::randn(&mut rng, 1.0, (b, g * g, d), DType::F32, &dev).unwrap();
        let multi = kernels::random::randn(&mut rng, 1.0, (b, g * g, 4 * d), DType::F32, &dev).unwrap();
        let query = kernels::random::randn(&mut rng, 1.0, (b, 1, h), DType::F32, &dev).unwrap();
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
        let cfg = QueccConfig { num_heads: 4, ..QueccConfig::new(d, g, h).with_visual_tokens(v).unwrap() };
        let training = Quecc::new(&cfg, Mode::Differentiable, vb.clone()).unwrap();
        let inference = Quecc::new(&cfg, Mode::Inference, vb).unwrap();
        let feats = VisionFeatures { single: single.clone(), multi: Some(multi.clone()), grid: g };
        let got = training.compress(&feats, Some(&query)).unwrap();
        let want = inference.compress(&feats, Some(&query)).unwrap();
        assert_eq!(got.dims(), [b, v, d]);
        let err = max_abs(&(got.clone() - &want).unwrap());
        assert!(err <= 1e-5 * max_abs(&want), "V = {v}: training path off by {err}");
        for i in 0..b {
            let alone = VisionFeatures {
                single: single.narrow(0, i, 1).unwrap(),
                multi: Some(multi.narrow(0, i, 1).unwrap()),
                grid: g,
            };
            let one = training.compress(&alone, Some(&query.narrow(0, i, 1).unwrap())).unwrap();
            let err = max_abs(&(one - got.narrow(0, i, 1).unwrap()).unwrap());
            assert!(err <= 1e-6, "V = {v}, image {i}: batched differs from alone by {err}");
        }
    }
}
