//! Bad input on the vision side gives typed errors naming the culprit, never panics.
use candle_core::{DType, Device, Tensor};
use engine::vision::{load_clip_tower, var_builder_from_files, ImageProcessorConfig};
use engine::Error;
use models::compress::{AvgPool, Compressor, Quecc, QueccConfig, TokenPacker, TokenPackerConfig};
use models::projector::{Projector, ProjectorKind, ProjectorLayout};
use models::vision::{ClipVisionConfig, VisionFeatures};
use models::Mode;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision")
}

/// A temporary CLIP directory with the fixture config and the given weight bytes.
fn clip_dir_with(weights: &[u8], config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), weights).unwrap();
    dir
}

fn fixture_config() -> String {
    std::fs::read_to_string(fixtures().join("clip/config.json")).unwrap()
}

fn fixture_weights() -> Vec<u8> {
    std::fs::read(fixtures().join("clip/model.safetensors")).unwrap()
}

#[test]
fn corrupt_and_truncated_safetensors_are_checkpoint_errors() {
    let w = fixture_weights();
    for (what, bytes) in [
        ("truncated", w[..w.len() / 2].to_vec()),
        ("garbage", b"this is not a safetensors file at all".to_vec()),
        ("empty", Vec::new()),
    ] {
        let dir = clip_dir_with(&bytes, &fixture_config());
        match load_clip_tower(dir.path(), 6, Mode::Inference, &Device::Cpu) {
            Err(Error::Checkpoint { path, .. }) => assert!(path.ends_with("model.safetensors"), "{what}"),
            other => panic!("{what}: expected Error::Checkpoint, got {other:?}"),
        }
    }
}

#[test]
fn missing_files_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_clip_tower(dir.path(), 6, Mode::Inference, &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Io { ref path, .. } if path.ends_with("config.json")), "{err:?}");
    let err = ImageProcessorConfig::clip_vit_large_patch14_336(false)
        .preprocess_file(&dir.path().join("nope.png"), &Device::Cpu)
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn bad_configs_are_config_errors_naming_the_field() {
    let cases = [
        ("{not json", "invalid JSON"),
        (r#"{"vision_config": {"hidden_act": "relu"}}"#, "hidden_act"),
        (r#"{"vision_config": {"hidden_size": 30, "num_attention_heads": 4}}"#, "num_attention_heads"),
        (r#"{"vision_config": {"image_size": 50, "patch_size": 7}}"#, "patch_size"),
        (r#"{"vision_config": {"hidden_size": "big"}}"#, "hidden_size"),
        (r#"{"vision_config": 3}"#, "vision_config"),
        ("[1, 2]", "object"),
    ];
    for (text, field) in cases {
        let dir = clip_dir_with(&fixture_weights(), text);
        match load_clip_tower(dir.path(), 1, Mode::Inference, &Device::Cpu) {
            Err(Error::Config { path, msg }) => {
                assert!(path.ends_with("config.json"));
                assert!(msg.contains(field), "{text}: message {msg:?} does not name {field}");
            }
            other => panic!("{text}: expected Error::Config, got {other:?}"),
        }
    }
    // A bare vision config (no `vision_config` key) with HF defaults is accepted.
    let cfg = ClipVisionConfig::from_json_str(r#"{"patch_size": 14, "image_size": 336}"#).unwrap();
    assert_eq!((cfg.hidden_size, cfg.grid(), cfg.hidden_act.as_str()), (768, 24, "quick_gelu"));
}

#[test]
fn wrong_shape_and_missing_tensor_name_the_tensor() {
    let files = [fixtures().join("llava_quecc_k4_s4.safetensors")];
    let vb = var_builder_from_files(&files, DType::F32, &Device::Cpu).unwrap();
    // The checkpoint's query embedding width is 48; claim 47.
    let cfg = QueccConfig { kernel: 4, stride: 4, ..QueccConfig::new(32, 8, 47) };
    match Quecc::new(&cfg, Mode::Inference, vb.pp("model.mm_projector.0")) {
        Err(Error::Shape { name, expected, found }) => {
            assert_eq!(name, "model.mm_projector.0.text_projection.0.weight");
            assert_eq!((expected, found), (vec![32, 47], vec![32, 48]));
        }
        other => panic!("expected Error::Shape, got {other:?}"),
    }
    // The QueCC checkpoint has no TokenPacker weights.
    match TokenPacker::new(&TokenPackerConfig::new(32, 8), Mode::Inference, vb.pp("model.mm_projector")) {
        Err(Error::MissingTensor { name, .. }) => assert_eq!(name, "model.mm_projector.q_proj_1.weight"),
        other => panic!("expected Error::MissingTensor, got {other:?}"),
    }
    // Projector loaded with the wrong layout: `model.mm_projector.0` is QueCC, not a Linear.
    let err = Projector::new(ProjectorKind::Linear, 32, 48, ProjectorLayout::Sequential, vb.pp("model.mm_projector"))
        .unwrap_err();
    assert!(matches!(err, Error::MissingTensor { ref name, .. } if name == "model.mm_projector.0.weight"), "{err:?}");
    // A CLIP directory without the tower weights reports the missing tensor and the directory.
    let dir = clip_dir_with(&std::fs::read(&files[0]).unwrap(), &fixture_config());
    let bogus = tempfile::tempdir().unwrap();
    std::fs::write(bogus.path().join("config.json"), fixture_config()).unwrap();
    std::fs::copy(fixtures().join("projector_linear.safetensors"), bogus.path().join("model.safetensors")).unwrap();
    match load_clip_tower(bogus.path(), 6, Mode::Inference, &Device::Cpu) {
        Err(Error::MissingTensor { name, location }) => {
            assert!(name.starts_with("vision_model."), "{name}");
            assert_eq!(location, bogus.path().display().to_string());
        }
        other => panic!("expected Error::MissingTensor, got {other:?}"),
    }
    // …whereas the LLaVA-layout checkpoint is found under its prefix.
    assert!(load_clip_tower(dir.path(), 6, Mode::Inference, &Device::Cpu).is_ok());
}

#[test]
fn non_image_files_are_image_errors() {
    let dir = tempfile::tempdir().unwrap();
    let proc = ImageProcessorConfig::clip_vit_large_patch14_336(true);
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "just some text, not a PNG").unwrap();
    let mut png =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/camera.png")).unwrap();
    png.truncate(png.len() / 3);
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &png).unwrap();
    for f in [text, cut] {
        match proc.preprocess_file(&f, &Device::Cpu) {
            Err(Error::Image { path, .. }) => assert_eq!(path, f),
            other => panic!("{}: expected Error::Image, got {other:?}", f.display()),
        }
    }
}

#[test]
fn impossible_visual_token_counts_are_invalid() {
    // 24×24 grid (ViT-L/14-336): V must be (24/r)² for a divisor r of 24.
    for v in [0usize, 2, 10, 25, 100, 577] {
        for err in [
            AvgPool::new(v, 24, 1024).unwrap_err(),
            QueccConfig::new(1024, 24, 4096).with_visual_tokens(v).unwrap_err(),
            TokenPacker::new(
                &TokenPackerConfig { visual_tokens: v, ..TokenPackerConfig::new(1024, 24) },
                Mode::Inference,
                candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu),
            )
            .unwrap_err(),
        ] {
            match err {
                Error::Invalid(msg) => {
                    assert!(msg.contains(&format!("V = {v}")), "{msg}");
                    assert!(msg.contains("[1, 4, 9, 16, 36, 64, 144, 576]"), "{msg}");
                }
                other => panic!("V = {v}: expected Error::Invalid, got {other:?}"),
            }
        }
    }
    // Kernel 3, stride 2 gives an 11×11 query grid (V = 121) whose windows cannot tile 24 → error.
    let bad = QueccConfig { kernel: 3, stride: 2, ..QueccConfig::new(1024, 24, 4096) };
    assert!(matches!(bad.out_grid(), Err(Error::Invalid(ref m)) if m.contains("V = 121")));
    let bad = QueccConfig { kernel: 25, stride: 1, ..QueccConfig::new(1024, 24, 4096) };
    assert!(matches!(bad.out_grid(), Err(Error::Invalid(_))));
}

#[test]
fn missing_query_or_features_are_invalid() {
    let files = [fixtures().join("llava_quecc_k4_s4.safetensors")];
    let vb = var_builder_from_files(&files, DType::F32, &Device::Cpu).unwrap();
    let q = Quecc::new(&QueccConfig::new(32, 8, 48), Mode::Inference, vb.pp("model.mm_projector.0")).unwrap();
    let dev = Device::Cpu;
    let feats = VisionFeatures {
        single: Tensor::zeros((1, 64, 32), DType::F32, &dev).unwrap(),
        multi: Some(Tensor::zeros((1, 64, 128), DType::F32, &dev).unwrap()),
        grid: 8,
    };
    assert!(matches!(q.compress(&feats, None), Err(Error::Invalid(_))));
    let wrong_query = Tensor::zeros((1, 1, 40), DType::F32, &dev).unwrap();
    assert!(matches!(q.compress(&feats, Some(&wrong_query)), Err(Error::Invalid(_))));
    let no_multi = VisionFeatures { multi: None, ..feats.clone() };
    let query = Tensor::zeros((1, 1, 48), DType::F32, &dev).unwrap();
    assert!(matches!(q.compress(&no_multi, Some(&query)), Err(Error::Invalid(_))));
    let wrong_grid = VisionFeatures { single: Tensor::zeros((1, 63, 32), DType::F32, &dev).unwrap(), ..feats };
    assert!(matches!(q.compress(&wrong_grid, Some(&query)), Err(Error::Invalid(_))));
    // Pixels of the wrong size for the tower.
    let tower = load_clip_tower(&fixtures().join("clip"), 6, Mode::Inference, &dev).unwrap();
    let pixels = Tensor::zeros((1, 3, 55, 56), DType::F32, &dev).unwrap();
    assert!(matches!(tower.hidden_states(&pixels, 6), Err(Error::Invalid(_))));
    assert!(matches!(tower.hidden_states(&pixels, 7), Err(Error::Invalid(_))));
    for bad in ["mlp0x_gelu", "resampler", "mlpx_gelu", "mlp2x_relu"] {
        let e = ProjectorKind::parse(bad).unwrap_err();
        assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
    }
    // Every accepted name round-trips through its spelling (what `inspect` and the cost model print).
    for good in ["linear", "mlp1x_gelu", "mlp2x_gelu", "mlp3x_gelu"] {
        assert_eq!(ProjectorKind::parse(good).unwrap().name(), good);
    }
    assert_eq!(ProjectorKind::parse("mlp3x_gelu").unwrap().depth(), 3);
}
