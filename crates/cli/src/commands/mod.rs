//! One file per command. Errors are turned into messages and exit codes here, at the edge.
pub mod bench;
pub mod data;
pub mod eval;
pub mod eval_grid;
pub mod fit;
pub mod flops;
pub mod frontier;
pub mod generate;
pub mod inspect;
pub mod law_source;
pub mod plot;
pub mod reproduce;
pub mod score;
pub mod serve;
pub mod sweep;
pub mod train;

/// Exit code for an error: 2 for bad input (data, config, arguments; each library's
/// `Error::is_user_error`), 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let user = e.downcast_ref::<UsageError>().is_some()
        || e.downcast_ref::<scaling::Error>().is_some_and(scaling::Error::is_user_error)
        || e.downcast_ref::<engine::Error>().is_some_and(engine::Error::is_user_error)
        || e.downcast_ref::<::train::Error>().is_some_and(::train::Error::is_user_error)
        || e.downcast_ref::<synth::Error>().is_some_and(synth::Error::is_user_error)
        || e.downcast_ref::<::eval::Error>().is_some_and(::eval::Error::is_user_error)
        || e.downcast_ref::<::serve::ServeError>().is_some_and(::serve::ServeError::is_user_error)
        || e.downcast_ref::<::sweep::Error>().is_some_and(::sweep::Error::is_user_error);
    if user {
        2
    } else {
        1
    }
}

/// The message of an error with its causes, each joined by `: `, leaving out a cause whose text the
/// message already ends with (a typed error that prints its OS error would otherwise show it twice:
/// "X: No such file: No such file").
pub fn message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.ends_with(&c) {
            msg += ": ";
            msg += &c;
        }
    }
    msg
}

/// A bad combination of command-line values (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Checks, before any work, that an output file given by `flag` can be written as a file: not an
/// existing folder (the atomic write would fail only at the end).
///
/// Errors: a [`UsageError`] naming the flag and the path.
pub fn check_output_file(flag: &str, path: &std::path::Path) -> Result<(), UsageError> {
    if path.is_dir() {
        return Err(UsageError(format!(
            "{flag} {}: is an existing folder, not a file: give the path of the file to write",
            path.display()
        )));
    }
    Ok(())
}

/// Parses a comma-separated list of numbers (`0.5,1.8,4`). Errors name the flag.
pub fn parse_list(flag: &str, s: &str) -> Result<Vec<f64>, UsageError> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| UsageError(format!("{flag}: `{x}` is not a number")))
        })
        .collect()
}

/// Process set-up for the inference commands (generate, eval, bench vision/infer), before any tensor
/// op: export candle's thread count once (`kernels::threads::pin_rayon_threads`) and keep freed activation
/// buffers in the allocator (`kernels::memory::keep_freed_buffers`).
pub fn prepare_inference() {
    kernels::threads::pin_rayon_threads();
    kernels::memory::keep_freed_buffers();
}

/// clap's parser for an LLM size preset of the train crate (`train::sizes::SIZES`: xs, s, m, l), so
/// that `--help` lists them and a wrong name is refused before any work.
pub fn llm_preset_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(::train::sizes::SIZES.iter().map(|s| s.name))
}

/// clap's parser for a compressor the trainer can train: every `CompressorKind` but `none`
/// (`train::model::trainable_compressor`).
pub fn trainable_compressor_parser() -> clap::builder::PossibleValuesParser {
    use scaling::cost::arch::CompressorKind;
    clap::builder::PossibleValuesParser::new(
        CompressorKind::ALL.into_iter().filter(|&k| k != CompressorKind::None).map(CompressorKind::name),
    )
}

/// Warns on stderr that the grid cells `missing` (ids; `failed` of them failed) have no result in an
/// aggregate just written (`sweep aggregate`, `eval-grid`).
pub fn warn_missing_cells(missing: &[String], failed: usize) {
    if !missing.is_empty() {
        eprintln!("warning: {} cells have no result ({failed} failed): {}", missing.len(), missing.join(", "));
    }
}
