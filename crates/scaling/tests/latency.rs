//! The measured-latency cost model: its formula, its file errors, and the frontier under it.
use scaling::cost::latency::{FormatRates, LatencyProfile};
use scaling::frontier::{CostModel, Domain, FrontierSpec};
use scaling::law::{Law, TokenAxis};

fn profile(vision_ms: f64, quecc: bool) -> LatencyProfile {
    LatencyProfile {
        machine: "test".into(),
        vision_ms,
        compressor_ms: 5.0,
        prefill_ms_per_token_per_billion: 2.0,
        decode_ms_per_token_per_billion: 20.0,
        quecc_query_pass: quecc,
        formats: vec![],
    }
}

/// The frontier over the sets `ns` (N, billions) and `vs` (V) at Q = 50.
fn spec(law: Law, ns: &[f64], vs: &[f64]) -> FrontierSpec {
    FrontierSpec {
        law,
        axis: TokenAxis::Visual,
        text_tokens: 50.0,
        sizes: Domain::Set(ns.to_vec()),
        tokens: Domain::Set(vs.to_vec()),
    }
}

#[test]
fn ttft_formula() {
    // 100 + 5 + 2 ms · 7 B · (50 + 16) tokens = 1029 ms
    assert!((profile(100.0, false).ttft_seconds(7.0, 50.0, 16.0) - 1.029).abs() < 1e-12);
    // QueCC runs the LLM over the 50 question tokens once more: + 2 · 7 · 50 ms
    assert!((profile(100.0, true).ttft_seconds(7.0, 50.0, 16.0) - 1.729).abs() < 1e-12);
    assert_eq!(profile(0.0, false).unit(), "s");
}

#[test]
fn frontier_under_latency_matches_brute_force() {
    let law = Law::Multiplicative { a: 0.6, alpha: 0.077, beta: 0.015, d: 0.03 };
    let ns = vec![0.5, 1.8, 4.0, 7.0, 14.0];
    let vs = vec![1.0, 4.0, 16.0, 36.0, 64.0, 144.0, 576.0];
    let spec = spec(law, &ns, &vs);
    let p = profile(2800.0, true);
    for budget in [2.9, 3.5, 5.0, 12.0, 60.0] {
        let mut best: Option<(f64, f64, f64)> = None;
        for &n in &ns {
            for &v in &vs {
                if p.ttft_seconds(n, 50.0, v) <= budget {
                    let e = law.predict(n, v);
                    if best.is_none_or(|b| e < b.0) {
                        best = Some((e, n, v));
                    }
                }
            }
        }
        let got = spec.optimum(&p, budget).unwrap().map(|o| (o.predicted_error, o.llm_params, o.visual_tokens));
        assert_eq!(got, best, "budget {budget}");
    }
}

#[test]
fn profile_file_round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    profile(10.0, false).write(&path).unwrap();
    assert_eq!(LatencyProfile::from_file(&path).unwrap(), profile(10.0, false));
    std::fs::write(&path, r#"{"vision_ms": 1}"#).unwrap();
    let e = LatencyProfile::from_file(&path).unwrap_err().to_string();
    assert!(e.contains("p.json") && e.contains("prefill_ms_per_token_per_billion"), "{e}");
    std::fs::write(
        &path,
        r#"{"vision_ms": -1, "prefill_ms_per_token_per_billion": 1, "decode_ms_per_token_per_billion": 1}"#,
    )
    .unwrap();
    assert!(LatencyProfile::from_file(&path).unwrap_err().to_string().contains("vision_ms"));
}

/// A profile of several weight formats: each format's optimum is the brute-force optimum under that
/// format's rates (vision shared), and a faster format affords a larger LLM or more tokens.
#[test]
fn per_format_profiles_search_each_formats_rates() {
    let law = Law::Multiplicative { a: 0.6, alpha: 0.077, beta: 0.015, d: 0.03 };
    let ns = vec![0.5, 1.8, 4.0, 7.0, 14.0];
    let vs = vec![1.0, 4.0, 16.0, 64.0, 576.0];
    let spec = spec(law, &ns, &vs);
    let rates = |w: &str, pre: f64| FormatRates {
        weights: w.into(),
        prefill_ms_per_token_per_billion: pre,
        decode_ms_per_token_per_billion: 10.0 * pre,
    };
    let mut p = profile(1000.0, false);
    p.formats = vec![rates("bf16", 8.0), rates("q8_0", 5.0), rates("q4_0", 3.0)];
    let per = p.per_format("");
    assert_eq!(per.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(), ["bf16", "q8_0", "q4_0"]);
    for budget in [1.5, 2.0, 4.0, 9.0] {
        let mut errors = vec![];
        for (w, fp) in &per {
            let pre = p.formats.iter().find(|f| &f.weights == w).unwrap().prefill_ms_per_token_per_billion;
            let mut best: Option<(f64, f64, f64)> = None;
            for &n in &ns {
                for &v in &vs {
                    // vision 1000 ms + compressor 5 ms + the format's prefill over Q + V tokens
                    if (1005.0 + pre * n * (50.0 + v)) / 1e3 <= budget {
                        let e = law.predict(n, v);
                        if best.is_none_or(|b| e < b.0) {
                            best = Some((e, n, v));
                        }
                    }
                }
            }
            let got = spec.optimum(fp, budget).unwrap().map(|o| (o.predicted_error, o.llm_params, o.visual_tokens));
            assert_eq!(got, best, "{w} at {budget} s");
            errors.push(got.map_or(f64::INFINITY, |g| g.0));
        }
        // the fastest format never predicts a higher error
        assert!(errors[2] <= errors[1] && errors[1] <= errors[0], "{budget}: {errors:?}");
    }
    // without formats: the profile itself, under the given name
    let alone = profile(1000.0, false).per_format("bf16");
    assert_eq!(alone, vec![("bf16".to_string(), profile(1000.0, false))]);
}

#[test]
fn format_rates_in_a_file_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    let mut p = profile(10.0, false);
    p.formats = vec![FormatRates {
        weights: "q4_0".into(),
        prefill_ms_per_token_per_billion: 1.5,
        decode_ms_per_token_per_billion: 9.0,
    }];
    p.write(&path).unwrap();
    assert_eq!(LatencyProfile::from_file(&path).unwrap(), p);
    let head =
        r#"{"vision_ms": 1, "prefill_ms_per_token_per_billion": 1, "decode_ms_per_token_per_billion": 1, "formats": "#;
    for (formats, want) in [
        (
            r#"[{"weights": "bf16", "prefill_ms_per_token_per_billion": 0, "decode_ms_per_token_per_billion": 1}]"#,
            "formats[0]",
        ),
        (
            r#"[{"weights": "", "prefill_ms_per_token_per_billion": 1, "decode_ms_per_token_per_billion": 1}]"#,
            "weights",
        ),
        (
            r#"[{"weights": "q8_0", "prefill_ms_per_token_per_billion": 1, "decode_ms_per_token_per_billion": 1},
                {"weights": "q8_0", "prefill_ms_per_token_per_billion": 2, "decode_ms_per_token_per_billion": 1}]"#,
            "twice",
        ),
        (r#"[{"weights": "bf16", "prefill_ms_per_token_per_billion": 1}]"#, "decode_ms_per_token_per_billion"),
    ] {
        std::fs::write(&path, format!("{head}{formats}}}")).unwrap();
        let e = LatencyProfile::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("p.json") && e.contains(want), "{want}: {e}");
    }
}
