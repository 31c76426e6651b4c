//! LLaVA-layout checkpoint loading (single and sharded safetensors, `mm_*` keys) and bad input:
//! missing, truncated or corrupt files and unsupported config values are errors naming the file or
//! field, never panics. Parity of the loaded LLM is checked against the HF fixture outputs.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use engine::checkpoint::{Checkpoint, VisionTowerSource};
use engine::Error;
use models::decoder::DecoderConfig;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm").join(name)
}

/// Copies the llama fixture's config/tokenizer into `dir`, merging `extra` into config.json.
fn write_config(dir: &Path, extra: serde_json::Value) {
    let src = fixture("llama_tiny");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
}

fn llava_keys() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llava_llama",
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": 1024,
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_patch_merge_type": "flat",
        "mm_use_im_start_end": false,
        "image_aspect_ratio": "pad",
        "mm_vision_token_compression_type": "quecc",
        "mm_vision_token_compression_kernel_size": 6,
        "mm_vision_token_compression_stride": 6,
        "mm_vision_output_token_count": 576,
        "mm_vision_output_text_embedding_size": 48
    })
}

fn rel_err(ours: &Tensor, want: &Tensor) -> f32 {
    let d = (ours - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let s = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    d.to_scalar::<f32>().unwrap() / s.to_scalar::<f32>().unwrap()
}

fn check_logits(ck: &Checkpoint) {
    let exp = candle_core::safetensors::load(fixture("llama_tiny").join("expected.safetensors"), &Device::Cpu).unwrap();
    let mut dec = ck.decoder(DType::F32, &Device::Cpu).unwrap();
    let ids = exp["prefill_ids"].to_dtype(DType::U32).unwrap();
    let logits = dec.forward_ids(&ids, 0).unwrap();
    let e = rel_err(&logits, &exp["prefill_logits"]);
    println!("checkpoint prefill logits: max relative error {e:.3e}");
    assert!(e <= 1e-4);
}

#[test]
fn single_file_llava_checkpoint_loads() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), llava_keys());
    std::fs::copy(fixture("llama_tiny").join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let ck = Checkpoint::open(dir.path()).unwrap();
    let mm = ck.multimodal_config();
    assert_eq!(mm.projector_type(), "mlp2x_gelu");
    assert_eq!(mm.mm_vision_select_layer, Some(-2));
    assert_eq!(mm.compression_type(), Some("quecc"));
    assert_eq!(mm.compression_kernel_size(), 6);
    assert_eq!(mm.output_token_count(), 576);
    assert_eq!(mm.text_embedding_size(), 48);
    assert!(ck.contains("model.layers.1.mlp.down_proj.weight"));
    assert!(ck.tokenizer_path().is_ok());
    check_logits(&ck);
    // The hub name is not local and the checkpoint holds no tower: an error naming the field.
    match ck.vision_tower_source(None) {
        Err(Error::Config { msg, .. }) => assert!(msg.contains("mm_vision_tower"), "{msg}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let clip = tempfile::tempdir().unwrap();
    assert_eq!(
        ck.vision_tower_source(Some(clip.path())).unwrap(),
        VisionTowerSource::Directory(clip.path().to_path_buf())
    );
}

#[test]
fn plain_llm_checkpoint_without_mm_keys_loads() {
    let ck = Checkpoint::open(&fixture("qwen2_tiny")).unwrap();
    assert_eq!(ck.multimodal_config().compression_type(), None);
    assert_eq!(ck.multimodal_config().projector_type(), "linear");
    assert_eq!(ck.weight_files().len(), 1);
}

fn write_sharded(dir: &Path) -> BTreeMap<String, String> {
    let tensors =
        candle_core::safetensors::load(fixture("llama_tiny").join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = BTreeMap::new();
    for (file, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
        let sub: HashMap<String, Tensor> = part.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&sub, dir.join(file)).unwrap();
        for n in part {
            map.insert((*n).clone(), file.to_string());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    map
}

#[test]
fn sharded_checkpoint_loads_and_matches_hf() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), llava_keys());
    write_sharded(dir.path());
    let ck = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ck.weight_files().len(), 2);
    check_logits(&ck);
}

#[test]
fn missing_shard_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), llava_keys());
    write_sharded(dir.path());
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    match Checkpoint::open(dir.path()) {
        Err(Error::Checkpoint { path, .. }) => assert!(path.ends_with("model-00002-of-00002.safetensors")),
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn index_listing_a_tensor_missing_from_its_shard_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), llava_keys());
    let mut map = write_sharded(dir.path());
    map.insert("model.mm_projector.0.weight".into(), "model-00001-of-00002.safetensors".into());
    let index = serde_json::json!({"weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    match Checkpoint::open(dir.path()) {
        Err(Error::Checkpoint { msg, .. }) => assert!(msg.contains("model.mm_projector.0.weight"), "{msg}"),
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

/// A well-formed safetensors header whose tensor shape (2^40 × 2^40 × 16 f32) overflows usize bytes.
fn huge_shape_header() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[1099511627776,1099511627776,16],"data_offsets":[0,0]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out
}

#[test]
fn truncated_or_corrupt_safetensors_is_an_error_naming_the_file() {
    let bytes = std::fs::read(fixture("llama_tiny").join("model.safetensors")).unwrap();
    for (what, data) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("header only", bytes[..100].to_vec()),
        ("garbage", b"this is not a safetensors file at all".to_vec()),
        ("empty", vec![]),
        ("shape whose byte size overflows", huge_shape_header()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), llava_keys());
        std::fs::write(dir.path().join("model.safetensors"), &data).unwrap();
        match Checkpoint::open(dir.path()) {
            Err(Error::Checkpoint { path, msg }) => {
                assert!(path.ends_with("model.safetensors"), "{what}: {}", path.display());
                println!("{what}: {msg}");
            }
            other => panic!("{what}: expected a checkpoint error, got {other:?}"),
        }
    }
}

#[test]
fn reader_rejects_a_shape_whose_byte_size_overflows() {
    // Checkpoint::open is guarded by the safetensors crate's own check; the reader that CLIP
    // directories and shards go through must not let a wrapped-around size (here 2^84 bytes ≡ 0)
    // pass as a valid empty tensor (the safetensors crate's validation reports the overflow, naming
    // no tensor; the error names the file).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, huge_shape_header()).unwrap();
    match engine::safetensors_reader::SafetensorsReader::open(std::slice::from_ref(&path)) {
        Err(Error::Checkpoint { path: p, msg }) => {
            assert!(p.ends_with("model.safetensors"));
            assert!(msg.contains("overflow"), "{msg}");
        }
        Err(other) => panic!("expected a checkpoint error naming the tensor, got {other:?}"),
        Ok(_) => panic!("a shape of 2^84 bytes was accepted"),
    }
}

#[test]
fn missing_weights_or_config_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(Checkpoint::open(dir.path()), Err(Error::Io { .. })));
    write_config(dir.path(), llava_keys());
    assert!(matches!(Checkpoint::open(dir.path()), Err(Error::Checkpoint { .. })));
    assert!(matches!(Checkpoint::open(&dir.path().join("nope")), Err(Error::Checkpoint { .. })));
}

#[test]
fn missing_llm_tensor_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), llava_keys());
    let mut tensors =
        candle_core::safetensors::load(fixture("llama_tiny").join("model.safetensors"), &Device::Cpu).unwrap();
    tensors.remove("model.layers.1.self_attn.k_proj.weight");
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let ck = Checkpoint::open(dir.path()).unwrap();
    let err = ck.decoder(DType::F32, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("model.layers.1.self_attn.k_proj.weight"), "{err}");
}

#[test]
fn wrong_weight_shape_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // hidden_size 40 no longer matches the stored (48-wide) weights.
    write_config(dir.path(), serde_json::json!({"hidden_size": 40, "head_dim": 12}));
    std::fs::copy(fixture("llama_tiny").join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let ck = Checkpoint::open(dir.path()).unwrap();
    assert!(ck.decoder(DType::F32, &Device::Cpu).is_err());
}

fn config_error(extra: serde_json::Value, field: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), extra);
    std::fs::copy(fixture("llama_tiny").join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    match Checkpoint::open(dir.path()) {
        Err(Error::Config { path, msg }) => {
            assert!(path.ends_with("config.json"));
            assert!(msg.contains(field), "message {msg:?} should name {field}");
        }
        other => panic!("expected a config error naming {field}, got {other:?}"),
    }
}

#[test]
fn unsupported_config_values_are_errors_naming_the_field() {
    config_error(serde_json::json!({"rope_scaling": {"type": "linear", "factor": 2.0}}), "rope_scaling");
    config_error(serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}), "rope_scaling");
    config_error(serde_json::json!({"model_type": "gpt2"}), "model_type");
    config_error(serde_json::json!({"hidden_act": "gelu"}), "hidden_act");
    config_error(serde_json::json!({"num_key_value_heads": 3}), "num_key_value_heads");
    config_error(serde_json::json!({"hidden_size": "big"}), "hidden_size");
    config_error(serde_json::json!({"mm_projector_type": "resampler"}), "mm_projector_type");
    config_error(serde_json::json!({"mm_patch_merge_type": "spatial_unpad"}), "mm_patch_merge_type");
    config_error(serde_json::json!({"mm_use_im_start_end": true}), "mm_use_im_start_end");
    config_error(
        serde_json::json!({"mm_vision_token_compression_type": "quecc", "mm_vision_output_token_count": 575}),
        "mm_vision_output_token_count",
    );
}

#[test]
fn qwen_sliding_window_and_invalid_json_are_errors() {
    let e = DecoderConfig::from_json_str(r#"{"model_type": "qwen2", "use_sliding_window": true}"#).unwrap_err();
    assert!(e.to_string().contains("use_sliding_window"), "{e}");
    assert!(DecoderConfig::from_json_str("{not json").is_err());
    assert!(DecoderConfig::from_json_str("{}").unwrap_err().to_string().contains("model_type"));
    // HF defaults when keys are absent; v4-style rope_theta and v5-style rope_parameters.
    let c = DecoderConfig::from_json_str(r#"{"model_type": "llama", "rope_theta": 500000.0}"#).unwrap();
    assert_eq!((c.vocab_size, c.num_key_value_heads, c.max_position_embeddings), (32000, 32, 2048));
    assert_eq!(c.rope_theta, 500000.0);
    assert!(!c.qkv_bias && !c.tie_word_embeddings);
    let c = DecoderConfig::from_json_str(
        r#"{"model_type": "qwen2", "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "eos_token_id": [1, 2]}"#,
    )
    .unwrap();
    assert_eq!(c.rope_theta, 1e6);
    assert!(c.qkv_bias && !c.o_bias);
    assert_eq!(c.eos_token_ids, vec![1, 2]);
    assert_eq!(c.max_position_embeddings, 32768);
}
