//! One file per command. Errors are turned into messages and exit codes here, at the edge.
pub mod bench;
pub mod data;
pub mod flops;
pub mod fit;
pub mod frontier;
pub mod generate;
pub mod inspect;
pub mod law_source;
pub mod plot;
pub mod reproduce;
pub mod score;
pub mod train;
pub mod sweep;

/// Exit code for an error: 2 for bad input (data, config, arguments), 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use scaling::Error as S;
    match e.downcast_ref::<S>() {
        Some(S::Data { .. } | S::Dataset { .. } | S::Json { .. } | S::Invalid(_) | S::Io { .. }) => 2,
        Some(_) => 1,
        None if e.downcast_ref::<UsageError>().is_some() => 2,
        None if matches!(e.downcast_ref::<::train::Error>(), Some(te) if !matches!(te, ::train::Error::Vlm(vlm::Error::Candle(_)))) => 2,
        None if matches!(e.downcast_ref::<vlm::Error>(), Some(ve) if !matches!(ve, vlm::Error::Candle(_))) => 2,
        None if e.downcast_ref::<synth::Error>().is_some() => 2,
        None if e.downcast_ref::<vlmscale_eval::Error>().is_some() => 2,
        None => 1,
    }
}

/// A bad combination of command-line values (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses a comma-separated list of numbers (`0.5,1.8,4`). Errors name the flag.
pub fn parse_list(flag: &str, s: &str) -> Result<Vec<f64>, UsageError> {
    s.split(',')
        .map(|x| x.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| UsageError(format!("{flag}: `{x}` is not a number"))))
        .collect()
}

/// Process set-up for the inference commands (generate, eval, bench vision/infer), before any tensor
/// op: export candle's thread count once (`vlm::threads::pin_rayon_threads`) and keep freed activation
/// buffers in the allocator (`vlm::memory::keep_freed_buffers`).
pub fn prepare_inference() {
    vlm::threads::pin_rayon_threads();
    vlm::memory::keep_freed_buffers();
}
