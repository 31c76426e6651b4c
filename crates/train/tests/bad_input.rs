//! Bad input is a clear typed error, never a panic.
use std::path::Path;

use train::features::FeatureSet;
use train::sizes::LlmSize;
use train::vlm_train::{train_vlm, TrainData, VlmTrainConfig};

fn fake_tower(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "image_size": 80, "patch_size": 10}"#,
    )
    .unwrap();
}

#[test]
fn unknown_compressor_and_size_are_named() {
    let e = train::model::trainable_compressor("perceiver").unwrap_err();
    assert!(e.to_string().contains("perceiver") && e.to_string().contains("quecc-noquery"), "{e}");
    let e = LlmSize::from_name("xxl").unwrap_err();
    assert!(e.to_string().contains("xxl") && e.to_string().contains("xs"), "{e}");
    let tmp = tempfile::tempdir().unwrap();
    fake_tower(&tmp.path().join("t"));
    let cfg = VlmTrainConfig::new("xs", "resampler", 4, &tmp.path().join("t"), &tmp.path().join("o"));
    assert!(matches!(train_vlm(&cfg, &mut |_| {}), Err(train::Error::UnknownCompressor(_))));
}

#[test]
fn visual_tokens_not_producible_from_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    fake_tower(&tmp.path().join("t"));
    for (c, v) in [("quecc", 9), ("tokenpacker", 36), ("avgpool", 0), ("quecc-noquery", 5)] {
        let cfg = VlmTrainConfig::new("xs", c, v, &tmp.path().join("t"), &tmp.path().join("o"));
        let e = train_vlm(&cfg, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("allowed V") && e.to_string().contains("64"), "{c} V={v}: {e}");
    }
}

#[test]
fn missing_tower_is_an_io_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = VlmTrainConfig::new("xs", "quecc", 4, &tmp.path().join("nope"), &tmp.path().join("o"));
    let e = train_vlm(&cfg, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn corrupt_jsonl_and_missing_images() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{not json\n").unwrap();
    let e = TrainData::Jsonl(bad.clone()).load().unwrap_err();
    assert!(matches!(e, train::Error::Synth(synth::Error::Json { .. })), "{e}");

    let missing = tmp.path().join("missing.jsonl");
    std::fs::write(
        &missing,
        r#"{"id": "a", "image": "images/a.png", "conversations": [{"from": "human", "value": "<image>\nWhat is the shape of the red object?"}, {"from": "gpt", "value": "circle"}], "family": "shape", "task": "sort_of_clevr"}"#,
    )
    .unwrap();
    let e = TrainData::Jsonl(missing).load().unwrap_err();
    assert!(matches!(e, train::Error::Synth(synth::Error::MissingImage { .. })), "{e}");
}

#[test]
fn corrupt_feature_and_checkpoint_files() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("features.safetensors");
    std::fs::write(&f, b"garbage").unwrap();
    let e = FeatureSet::load(&f).unwrap_err();
    assert!(matches!(e, train::Error::Checkpoint { .. }) && e.to_string().contains("features.safetensors"), "{e}");

    let ck = tmp.path().join("ck");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(ck.join("config.json"), r#"{"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1}"#).unwrap();
    std::fs::write(ck.join("model.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let e = train::eval::load_vlm(&ck).err().expect("corrupt weights must fail");
    assert!(e.to_string().contains("model.safetensors"), "{e}");

    // A trainer state whose optimiser file is truncated refuses to resume.
    std::fs::write(ck.join("trainer_state.json"), r#"{"step": 1, "settings": {}, "losses": [1.0], "wall_s": 0.1}"#)
        .unwrap();
    std::fs::write(ck.join("optimizer.safetensors"), b"xx").unwrap();
    let e = train::checkpoint_io::load_trainer_state(&ck).unwrap_err();
    assert!(e.to_string().contains("optimizer.safetensors"), "{e}");
}

#[test]
fn bad_init_std_is_named_before_any_work() {
    // The fake tower has no weights: a check made only when weights are drawn would fail on the
    // tower instead, and the output folder would already exist.
    let tmp = tempfile::tempdir().unwrap();
    fake_tower(&tmp.path().join("t"));
    for bad in [0.0, -0.02, f64::NAN, f64::INFINITY] {
        let mut cfg = VlmTrainConfig::new("xs", "quecc", 4, &tmp.path().join("t"), &tmp.path().join("o"));
        cfg.init_std = bad;
        let e = train_vlm(&cfg, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("init_std"), "{bad}: {e}");
        assert!(!tmp.path().join("o").exists(), "{bad}: output folder created");
    }
}
