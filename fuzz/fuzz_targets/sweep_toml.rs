//! Text as a sweep config TOML: parsed and validated, or refused with an error, never a panic.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = sweep::grid::SweepConfig::from_toml_str(text, Path::new("/fuzz/sweep.toml"));
});
