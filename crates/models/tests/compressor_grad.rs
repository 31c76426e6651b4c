//! The compressors built in `Mode::Differentiable` from a `VarMap` train: candle's backward pass gives
//! gradients for every parameter, equal to central finite differences (f64).
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use models::compress::{Compressor, Quecc, QueccConfig, TokenPacker, TokenPackerConfig};
use models::vision::VisionFeatures;
use models::Mode;

const G: usize = 4;
const D: usize = 16;
const H: usize = 12;

fn inputs(dev: &Device) -> (VisionFeatures, Tensor, Tensor) {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let single = kernels::random::randn(&mut rng, 1.0, (2, G * G, D), candle_core::DType::F64, dev).unwrap();
    let multi = kernels::random::randn(&mut rng, 1.0, (2, G * G, 4 * D), candle_core::DType::F64, dev).unwrap();
    let query = kernels::random::randn(&mut rng, 1.0, (2, 1, H), candle_core::DType::F64, dev).unwrap();
    let probe = kernels::random::randn(&mut rng, 1.0, (2, 4, D), candle_core::DType::F64, dev).unwrap(); // V = 4 outputs
    (VisionFeatures { single, multi: Some(multi), grid: G }, query, probe)
}

fn var(map: &VarMap, name: &str) -> Var {
    map.data().lock().unwrap().get(name).unwrap_or_else(|| panic!("no var {name}")).clone()
}

/// Compares d loss / d p[idx] from backward with a central difference for a few parameters.
fn check_grads(map: &VarMap, loss: &dyn Fn() -> Tensor, names: &[&str]) {
    let l = loss();
    let grads = l.backward().unwrap();
    for (name, v) in map.data().lock().unwrap().iter() {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let s = g.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(s.is_finite() && s > 0.0, "{name}: gradient sum {s}");
    }
    for name in names {
        let v = var(map, name);
        let analytic =
            grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().get(1).unwrap().to_scalar::<f64>().unwrap();
        let orig = v.as_tensor().copy().unwrap();
        let n = orig.elem_count();
        let eps = 1e-5;
        let bump = |delta: f64| -> f64 {
            let mut d = vec![0f64; n];
            d[1] = delta;
            let t = (&orig + Tensor::from_vec(d, orig.shape(), orig.device()).unwrap()).unwrap();
            v.set(&t).unwrap();
            loss().to_scalar::<f64>().unwrap()
        };
        let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
        v.set(&orig).unwrap();
        println!("{name}[1]: backward {analytic:.8e}, finite difference {numeric:.8e}");
        assert!((analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()), "{name}");
    }
}

#[test]
fn quecc_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let (feats, query, probe) = inputs(&dev);
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &dev);
    let cfg = QueccConfig { num_heads: 4, ..QueccConfig::new(D, G, H).with_visual_tokens(4).unwrap() };
    let q = Quecc::new(&cfg, Mode::Differentiable, vb).unwrap();
    let loss = || q.compress(&feats, Some(&query)).unwrap().mul(&probe).unwrap().sum_all().unwrap();
    check_grads(
        &map,
        &loss,
        &[
            "q_downsample.weight",
            "text_projection.0.weight",
            "q_proj.3.weight",
            "k_proj.0.weight",
            "clip_attn.in_proj_weight",
        ],
    );
}

#[test]
fn tokenpacker_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let (feats, _, probe) = inputs(&dev);
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &dev);
    let cfg = TokenPackerConfig { visual_tokens: 4, num_heads: 4, ..TokenPackerConfig::new(D, G) };
    let tp = TokenPacker::new(&cfg, Mode::Differentiable, vb).unwrap();
    let loss = || tp.compress(&feats, None).unwrap().mul(&probe).unwrap().sum_all().unwrap();
    check_grads(&map, &loss, &["q_proj_1.weight", "ln_k_1.weight", "v_proj_1.2.weight", "clip_attn.out_proj.weight"]);
}
