//! Text as a LLaVA checkpoint's `config.json` (LLM config + `mm_*` keys): parsed and validated, or
//! refused with an error, never a panic.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = engine::checkpoint::parse_config_json(Path::new("config.json"), text);
});
