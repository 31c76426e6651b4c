//! Training-free visual-token reduction ([`models::reduction`], [`engine::model::Vlm`] with
//! `AnswerOptions::token_reduction`) against independent PyTorch references written from each method's
//! repository in `tests/fixtures/make_reduction_fixtures.py`, on the committed tiny LLaVA-1.5 Llama
//! checkpoint `fixtures/vlm/llava15_llama` (HF CLIPVisionModel, 8×8 grid, 4 heads, select layer −2; HF
//! LlamaForCausalLM, 2 layers) and the photographs `images/chelsea.png`, `images/camera.png`:
//!
//! - VisionZip: dvlab-research/VisionZip @ 3151f6df, `visionzip/clip_encoder.py`
//!   (`CLIPVisionTower_VisionZip.forward`), `visionzip/utils.py` (`CLIPAttention_forward`);
//! - CLS top-k: Theia-4869/FasterVLM @ f5d5f120, `llava/model/llava_arch.py` (`encode_images`);
//! - PruMerge+: 42Shawn/LLaVA-PruMerge @ 097c0411, `llava/model/multimodal_encoder/clip_encoder.py`
//!   (`token_prune_merge_advanced_plus`, adaptive), and its fixed-V variant;
//! - avgpool: `F.avg_pool2d`;
//! - FastV: pkunlp-icler/FastV @ d1659729, `modeling_llama.py` (`LlamaModel.fastv_forward`).
//!
//! Kept indices identical; features and logits within 1e-4 relative (max|ours − ref| / max|ref|) in
//! f32; greedy ids identical.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use engine::model::{AnswerOptions, LoadOptions, Vlm};
use engine::Error;
use models::decoder::FastV;
use models::reduction::{ReductionMethod, TokenReduction};
use models::vision::{extract_features, extract_with_maps, FeatureLayers, MapsRequest};

const TOL: f32 = 1e-4;
const QUESTION: &str = "What is shown in the image?";
const IMAGES: [&str; 2] = ["chelsea", "camera"];

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir("reduction/expected.safetensors"), &Device::Cpu).unwrap()
}

fn expected_ids() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir("reduction/expected.json")).unwrap()).unwrap()
}

fn load(token_reduction: bool) -> Vlm {
    let opts = LoadOptions { token_reduction };
    Vlm::load_with(&dir("vlm/llava15_llama"), None, DType::F32, &Device::Cpu, &opts).unwrap()
}

fn check(what: &str, ours: &Tensor, want: &Tensor) {
    assert_eq!(ours.dims(), want.dims(), "{what}: shape");
    let diff = (ours - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let e = diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap();
    println!("{what}: max relative error {e:.3e}");
    assert!(e <= TOL, "{what}: max relative error {e} > {TOL}");
}

fn indices(t: &Tensor) -> Vec<usize> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|i| i as usize).collect()
}

fn reduction(name: &str, v: Option<usize>) -> TokenReduction {
    TokenReduction::new(name.parse::<ReductionMethod>().unwrap(), v)
}

/// The select block's CLS attention (per head) and keys against HF `output_attentions` and the
/// `k_proj` output; features with maps equal those without.
#[test]
fn clip_attention_maps_match_hf() {
    let (vlm, exp) = (load(true), expected());
    for img in IMAGES {
        let pixels = &exp[&format!("{img}_pixels")];
        let req = MapsRequest { attention: true, single_head: true };
        let out = extract_with_maps(vlm_tower(&vlm), pixels, vlm.feature_layers(), req).unwrap();
        let maps = out.attention.as_ref().unwrap();
        check(&format!("{img} CLS attention"), &maps.cls_attention, &exp[&format!("{img}_cls_attention")]);
        check(&format!("{img} keys"), &maps.keys, &exp[&format!("{img}_keys")]);
        let sh = out.single_head.as_ref().unwrap();
        let want = &exp[&format!("{img}_prumerge_cls_attention")];
        check(&format!("{img} PruMerge single-head CLS attention"), &sh.cls_attention.narrow(1, 1, 64).unwrap(), want);
        let plain = extract_features(vlm_tower(&vlm), pixels, &FeatureLayers::single_only(-2)).unwrap();
        let diff = (&plain.single - &out.features.single).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "maps must not change the features");
    }
}

fn vlm_tower(vlm: &Vlm) -> &models::vision::ClipVisionTower {
    vlm.vision_tower()
}

/// Every vision-side method at V = 64, 16, 4, 1 (and the adaptive PruMerge+) on both photographs:
/// kept indices identical, reduced features within 1e-4.
#[test]
fn vision_side_methods_match_references() {
    let (vlm, exp) = (load(true), expected());
    for img in IMAGES {
        let pixels = &exp[&format!("{img}_pixels")];
        let mut cases: Vec<(&str, Option<usize>, String)> = vec![];
        for v in [64, 16, 4, 1] {
            cases.push(("visionzip", Some(v), format!("{img}_visionzip_v{v}")));
            cases.push(("cls-topk", Some(v), format!("{img}_cls_topk_v{v}")));
            cases.push(("prumerge-plus-fixed", Some(v), format!("{img}_prumerge_plus_fixed_v{v}")));
            cases.push(("avgpool", Some(v), format!("{img}_avgpool_v{v}")));
        }
        cases.push(("prumerge-plus", None, format!("{img}_prumerge_plus")));
        for (method, v, key) in cases {
            let r = reduction(method, v);
            let got = vlm.reduced_visual_embeddings(pixels, &r).unwrap();
            check(&key, &got.reduced.tokens, &exp[&key]);
            if let Some(want) = exp.get(&format!("{key}_indices")) {
                assert_eq!(got.reduced.kept[0], indices(want), "{key}: kept indices");
            }
            if let Some(v) = v {
                assert_eq!(got.visual.dims(), [1, v, 48], "{key}: projected (1, V, H)");
            }
        }
    }
}

fn answer_ids(vlm: &mut Vlm, r: Option<TokenReduction>) -> (Vec<i64>, usize) {
    let img = engine::vision::load_image(&dir("images/chelsea.png")).unwrap();
    let opts = AnswerOptions { max_new_tokens: 8, token_reduction: r, ..Default::default() };
    let a = vlm.answer_image(&img, QUESTION, &opts, |_| Ok(())).unwrap();
    (a.tokens.iter().map(|&t| t as i64).collect(), a.timings.visual_tokens)
}

fn want_ids(ids: &serde_json::Value, key: &str) -> Vec<i64> {
    // HF's sequences end with the stop token when one was produced; ours exclude it (</s> = 2).
    ids[key].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).filter(|&i| i != 2).collect()
}

/// One loaded model answers a sequence of queries at V = 64, 16, 4, 1 with every method (and without
/// reduction) without reloading; greedy ids equal HF LlamaForCausalLM's on the reference's reduced tokens.
#[test]
fn one_model_answers_every_v_per_query() {
    let mut vlm = load(true);
    let ids = expected_ids();
    assert_eq!(answer_ids(&mut vlm, None).0, want_ids(&ids, "none_v64"), "no reduction");
    for v in [64, 16, 4, 1] {
        for method in ["visionzip", "cls-topk", "prumerge-plus-fixed", "avgpool"] {
            let (got, reported) = answer_ids(&mut vlm, Some(reduction(method, Some(v))));
            assert_eq!(got, want_ids(&ids, &format!("{method}_v{v}")), "{method} V = {v}");
            assert_eq!(reported, v, "{method}: timings report V");
        }
    }
    let (got, reported) = answer_ids(&mut vlm, Some(reduction("prumerge-plus", None)));
    let key = ids.as_object().unwrap().keys().find(|k| k.starts_with("prumerge-plus_v")).unwrap().clone();
    assert_eq!(got, want_ids(&ids, &key), "adaptive PruMerge+");
    assert_eq!(format!("prumerge-plus_v{reported}"), key, "adaptive PruMerge+ V");
    // And back to the full grid: nothing of the earlier queries lingers.
    assert_eq!(answer_ids(&mut vlm, None).0, want_ids(&ids, "none_v64"), "no reduction again");
}

/// FastV at K = 1 keeping V = 16, 4, 1 of the 64 image tokens: kept indices, the last prompt token's
/// logits after the pruned prefill, greedy ids over the per-layer KV lengths.
#[test]
fn fastv_matches_reference() {
    let mut vlm = load(false);
    let exp = expected();
    let ids = expected_ids();
    let k = ids["fastv_k"].as_u64().unwrap() as usize;
    let pixels = &exp["chelsea_pixels"];
    let visual = vlm.visual_embeddings(pixels, QUESTION).unwrap();
    let embeds = vlm.input_embeddings(QUESTION, &visual).unwrap();
    let start = vlm.prompt_tokens(QUESTION).unwrap().image_positions(64)[0];
    for v in [16, 4, 1] {
        let f = FastV { layer: k, image_start: start, image_len: 64, keep: v };
        let dec = vlm.decoder_mut();
        dec.clear_kv_cache();
        let (hidden, kept) = dec.prefill_fastv(&embeds, &f).unwrap();
        assert_eq!(kept, indices(&exp[&format!("fastv_k1_v{v}_indices")]), "FastV V = {v}: kept image tokens");
        let logits = dec.lm_head(&hidden).unwrap().squeeze(0).unwrap();
        check(&format!("FastV V = {v} last prompt logits"), &logits, &exp[&format!("fastv_k1_v{v}_last_logits")]);
        let n = embeds.dim(1).unwrap();
        assert_eq!(dec.kv_len(), n, "positions processed");
        let cache = dec.take_kv_cache();
        assert_eq!((cache.layer_len(0), cache.layer_len(1)), (n, n - 64 + v), "per-layer KV lengths");
        let mut r = reduction("fastv", Some(v));
        r.fastv_layer = k;
        let (got, reported) = answer_ids(&mut vlm, Some(r));
        assert_eq!(got, want_ids(&ids, &format!("fastv_k1_v{v}")), "FastV V = {v}: greedy ids");
        assert_eq!(reported, v);
    }
}

/// Bad requests are typed user errors (exit code 2 in the CLI), never panics.
#[test]
fn bad_reduction_requests_are_user_errors() {
    let mut vlm = load(false);
    let img = engine::vision::load_image(&dir("images/chelsea.png")).unwrap();
    let mut bad = vec![
        reduction("visionzip", Some(0)),
        reduction("cls-topk", Some(65)),
        reduction("avgpool", Some(9)),
        reduction("prumerge-plus", Some(16)),
        reduction("visionzip", None),
        reduction("prumerge-plus-fixed", Some(16)), // the tower was loaded without the block it scores with
    ];
    let mut fastv = reduction("fastv", Some(16));
    fastv.fastv_layer = 2; // the LLM has 2 layers
    bad.push(fastv);
    fastv.fastv_layer = 0;
    bad.push(fastv);
    for r in bad {
        let opts = AnswerOptions { max_new_tokens: 2, token_reduction: Some(r), ..Default::default() };
        let e = vlm.answer_image(&img, QUESTION, &opts, |_| Ok(())).unwrap_err();
        println!("{r:?}: {e}");
        assert!(matches!(e, Error::Invalid(_)) && e.is_user_error(), "{r:?}: {e:?}");
    }
    assert!("tome".parse::<ReductionMethod>().is_err());
    // A checkpoint with a trained compressor (QueCC) takes no training-free reduction.
    let mut quecc = Vlm::load(&dir("vlm/quecc_qwen2"), None, DType::F32, &Device::Cpu).unwrap();
    let opts = AnswerOptions {
        max_new_tokens: 2,
        token_reduction: Some(reduction("cls-topk", Some(1))),
        ..Default::default()
    };
    assert!(matches!(quecc.answer_image(&img, QUESTION, &opts, |_| Ok(())).unwrap_err(), Error::Invalid(_)));
}
