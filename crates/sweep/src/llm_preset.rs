//! N of a train-crate LLM size preset, as the law sees it: the trainable LLM parameters of the preset
//! (`train::sizes::LlmSize::num_parameters`, tied embedding counted once) with the generated-text
//! vocabulary the sweep trains with (`synth::build_tokenizer`), in billions (the scaling crate's
//! `llm_params` unit; paper §3 counts N in billions).
use crate::error::{Error, Result};

/// Vocabulary size (added tokens included) of the generated-text tokenizer every sweep cell trains with.
///
/// Errors: [`Error::Preset`] if the tokenizer cannot be built.
pub fn sweep_vocab_size() -> Result<usize> {
    let tok =
        synth::build_tokenizer(&[]).map_err(|e| Error::Preset { name: "<tokenizer>".into(), msg: e.to_string() })?;
    Ok(tok.get_vocab_size(true))
}

/// N in billions of preset `name` (`xs`, `s`, `m`, `l`).
///
/// Errors: [`Error::Preset`] naming the preset when it is unknown (listing the known ones).
pub fn preset_params_billions(name: &str) -> Result<f64> {
    let size =
        train::sizes::LlmSize::from_name(name).map_err(|e| Error::Preset { name: name.into(), msg: e.to_string() })?;
    Ok(size.num_parameters(sweep_vocab_size()?) as f64 / 1e9)
}
