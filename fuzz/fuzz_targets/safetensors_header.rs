//! Bytes as a whole safetensors file: both header readers (the checkpoint's name check and the
//! tensor-by-tensor reader's header parse) must return `Ok` or a clean error, never panic.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("model.safetensors");
    let names = engine::checkpoint::safetensors_names_from_bytes(path, data);
    let header = engine::safetensors_reader::parse_header(path, data);
    if let Ok(h) = &header {
        // Every tensor's data starts inside the file.
        for t in h {
            assert!(t.start <= data.len() as u64, "tensor {} starts past the end", t.name);
        }
    }
    // The reader accepts a subset of what the name check accepts (it also rejects dtypes candle cannot hold).
    if header.is_ok() {
        assert!(names.is_ok(), "parse_header accepted what the name check refused: {names:?}");
    }
});
