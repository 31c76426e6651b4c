//! The measured-latency cost model: its formula, its file errors, and the frontier under it.
use scaling::cost::latency::LatencyProfile;
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
    let spec = FrontierSpec {
        law,
        axis: TokenAxis::Visual,
        text_tokens: 50.0,
        sizes: Domain::Set(ns.clone()),
        tokens: Domain::Set(vs.clone()),
    };
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
