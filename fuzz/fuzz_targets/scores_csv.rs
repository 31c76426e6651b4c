//! Text as a scores CSV (the reader `fit` uses): parsed and validated, or refused with an error,
//! never a panic; accepted rows hold finite values, N > 0, V > 0 and an error in [0, 1].
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(ds) = scaling::data::Dataset::from_csv_str(text, "scores.csv") {
        for r in &ds.rows {
            assert!(r.llm_params.is_finite() && r.llm_params > 0.0, "{r:?}");
            assert!(r.visual_tokens.is_finite() && r.visual_tokens > 0.0, "{r:?}");
            assert!(r.text_tokens.is_finite() && r.text_tokens >= 0.0, "{r:?}");
            assert!((0.0..=1.0).contains(&r.error), "{r:?}");
        }
    }
});
