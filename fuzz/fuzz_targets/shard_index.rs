//! Text as `model.safetensors.index.json`: parsed or refused with an error, never a panic, and no
//! accepted shard path may leave the checkpoint folder.
#![no_main]
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = Path::new("model.safetensors.index.json");
    if let Ok(map) = engine::checkpoint::parse_weights_index(path, text) {
        for f in map.values() {
            assert!(!f.is_empty());
            assert!(Path::new(f).components().all(|c| matches!(c, Component::Normal(_))), "accepted {f:?}");
        }
    }
});
