//! `bench::train` runs a tiny benchmark and rejects bad settings with errors (throughput itself is not
//! test material).

#[test]
fn bench_runs_and_rejects_bad_settings() {
    use bench::train::{bench_train, BenchConfig};
    let cfg = BenchConfig {
        compressor: "avgpool".into(),
        visual_tokens: 4,
        batch_size: 2,
        vision_dim: 16,
        grid: 8,
        seed: 0,
        threads: 2,
    };
    let rows = bench_train(&cfg, &["xs"], 1, None, &mut |_, _, _| {}).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].samples_per_s > 0.0 && rows[0].gflops > 0.0);
    assert!(bench_train(&cfg, &["xs"], 0, None, &mut |_, _, _| {}).is_err());
    assert!(bench_train(&cfg, &["huge"], 1, None, &mut |_, _, _| {}).is_err());
    let bad_v = BenchConfig { visual_tokens: 5, ..cfg.clone() };
    assert!(bench_train(&bad_v, &["xs"], 1, None, &mut |_, _, _| {}).is_err());
    let bad_c = BenchConfig { compressor: "nope".into(), ..cfg };
    assert!(bench_train(&bad_c, &["xs"], 1, None, &mut |_, _, _| {}).is_err());
}
