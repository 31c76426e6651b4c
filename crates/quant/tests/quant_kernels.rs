//! Quantised products on seeded random inputs (ChaCha8): every kernel path this CPU runs, on both
//! block layouts, against an f64 product of the dequantised blocks, the bf16-panel prefill route,
//! thread counts and shape edges (odd block counts, N not a multiple of 16: a partial last group of
//! the interleaved layout, more rows than one chunk), and the errors.
use quant::{
    block::{dequantize_row_q8_0, quantize_row_q8_0},
    matmul_bf16_panels, matmul_f32_panels, matmul_with, matvec, ActQ8, QuantError, QuantFormat, QuantLayout,
    QuantMatrix, QuantPath, QK,
};

const LAYOUTS: [QuantLayout; 2] = [QuantLayout::Rows, QuantLayout::Interleaved16];
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect()
}

/// x quantised to Q8_0 and dequantised, (m, k): the activation values every path multiplies.
fn x_dequantised(x: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * k];
    for i in 0..m {
        dequantize_row_q8_0(&quantize_row_q8_0(&x[i * k..(i + 1) * k]), &mut out[i * k..(i + 1) * k]);
    }
    out
}

const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 32),
    (1, 17, 64),
    (1, 33, 96),
    (3, 40, 160),
    (4, 16, 1024),
    (5, 50, 2816),
    (9, 20, 32),
    (70, 19, 96),
    (67, 48, 320),
];

#[test]
fn every_path_matches_f64_of_dequantised_blocks() {
    let paths = QuantPath::available_paths();
    eprintln!("quantised kernel paths on this CPU: {paths:?}");
    assert_eq!(*paths.last().unwrap(), QuantPath::Scalar);
    for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(100 + s as u64);
        let w = random(&mut rng, n * k, 0.1);
        let mut x = random(&mut rng, m * k, 2.0);
        x[..k / 2].iter_mut().for_each(|v| *v *= 30.0); // blocks of very different scales
        let xd = x_dequantised(&x, m, k);
        let kb = k / QK;
        for (fmt, layout) in [QuantFormat::Q8_0, QuantFormat::Q4_0].into_iter().flat_map(|f| LAYOUTS.map(|l| (f, l))) {
            let wm = QuantMatrix::from_f32("w", fmt, n, k, &w).unwrap().with_layout(layout);
            let wd = wm.dequantize();
            for &path in &paths {
                for threads in [1, 2, 4] {
                    let mut y = vec![f32::NAN; m * n];
                    matmul_with(path, &wm, &x, m, &mut y, threads).unwrap();
                    for i in 0..m {
                        for j in 0..n {
                            let (mut want, mut s) = (0f64, 0f64);
                            for c in 0..k {
                                let p = xd[i * k + c] as f64 * wd[j * k + c] as f64;
                                want += p;
                                s += p.abs();
                            }
                            // Exact integer block sums; f32 rounding of kb scaled terms and their sum.
                            let tol = (kb + 2) as f64 * 2f64.powi(-24) * s;
                            let got = y[i * n + j] as f64;
                            assert!((got - want).abs() <= tol, "{fmt} {layout:?} {path} m {m} n {n} k {k} threads {threads} ({i}, {j}): {got} vs {want} (tol {tol:e})");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn matvec_is_the_one_row_product() {
    let (n, k) = (45, 288);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let w = random(&mut rng, n * k, 1.0);
    let x = random(&mut rng, k, 1.0);
    for (fmt, layout) in [QuantFormat::Q8_0, QuantFormat::Q4_0].into_iter().flat_map(|f| LAYOUTS.map(|l| (f, l))) {
        let wm = QuantMatrix::from_f32("w", fmt, n, k, &w).unwrap().with_layout(layout);
        let mut y = vec![0f32; n];
        matvec(&wm, &x, &mut y, 2).unwrap();
        let mut want = vec![0f32; n];
        matmul_with(QuantPath::best(), &wm, &x, 1, &mut want, 1).unwrap();
        assert_eq!(y, want, "{fmt} {layout:?}: matvec on 2 threads vs 1 (same path, same order per row)");
        // And the scalar path, within summation-order rounding.
        let mut sc = vec![0f32; n];
        matmul_with(QuantPath::Scalar, &wm, &x, 1, &mut sc, 1).unwrap();
        for j in 0..n {
            assert!(
                (y[j] - sc[j]).abs() <= 1e-5 * (1.0 + sc[j].abs()) * 4.0,
                "{fmt} {layout:?} row {j}: {} vs scalar {}",
                y[j],
                sc[j]
            );
        }
    }
}

/// A prefill product: `y` (m, N) = `x` (m, K) · `W`ᵀ.
type Route = fn(&QuantMatrix, &[f32], usize, &mut [f32]) -> Result<(), QuantError>;

/// A prefill route (`route`) against f64 of the dequantised W and the unquantised x, both formats, at
/// each (m, n, k): |error| ≤ (`rounding` + k·2⁻²⁴)·Σ|w·x|, `rounding` being what the route adds by
/// rounding its operands; a short output buffer is a length error.
fn check_route(route: Route, shapes: &[(usize, usize, usize)], seed: u64, rounding: f64) {
    for (s, &(m, n, k)) in shapes.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed + s as u64);
        let w = random(&mut rng, n * k, 0.1);
        let x = random(&mut rng, m * k, 1.0);
        for (fmt, layout) in [QuantFormat::Q8_0, QuantFormat::Q4_0].into_iter().flat_map(|f| LAYOUTS.map(|l| (f, l))) {
            let wm = QuantMatrix::from_f32("w", fmt, n, k, &w).unwrap().with_layout(layout);
            let wd = wm.dequantize();
            let mut y = vec![f32::NAN; m * n];
            route(&wm, &x, m, &mut y).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let (mut want, mut s) = (0f64, 0f64);
                    for c in 0..k {
                        let p = x[i * k + c] as f64 * wd[j * k + c] as f64;
                        want += p;
                        s += p.abs();
                    }
                    let tol = (rounding + k as f64 * 2f64.powi(-24)) * s;
                    assert!(
                        (y[i * n + j] as f64 - want).abs() <= tol,
                        "{fmt} {layout:?} m {m} n {n} k {k} ({i}, {j}): {} vs {want}",
                        y[i * n + j]
                    );
                }
            }
        }
    }
    let short =
        route(&QuantMatrix::from_f32("w", QuantFormat::Q8_0, 3, 32, &[0.0; 96]).unwrap(), &[0.0; 64], 2, &mut [0.0; 5]);
    assert!(matches!(short, Err(QuantError::Length { .. })), "{short:?}");
}

/// The prefill route through f32 blocks (CPUs without a bf16 tile kernel): W dequantised exactly, x
/// unrounded, f32 sums: |error| ≤ k·2⁻²⁴·Σ|w·x|; several blocks, the last partial, and the columns of
/// each block land in place.
#[test]
fn f32_panels_match_f64_of_dequantised_weights() {
    check_route(matmul_f32_panels, &[(20, 300, 96), (33, 600, 96), (3, 40, 64), (48, 40, 20000)], 300, 0.0);
}

/// The prefill route through bf16 panels: W dequantised then rounded to bf16 (relative 2⁻⁹), x
/// rounded to bf16 (2⁻⁹), f32 sums: |error| ≤ (2·2⁻⁹ + k·2⁻²⁴)·Σ|w·x|. The activations are prepared
/// once per product: (40, 528, 64) reuses them for three panels on the tile kernels, and panels whose
/// width the tiles do not take (the last of 300 or 513 rows) go through the kernel's own choice.
#[test]
fn bf16_panels_match_f64_of_dequantised_weights() {
    check_route(
        matmul_bf16_panels,
        &[(20, 300, 96), (33, 513, 320), (3, 40, 64), (17, 16, 2816), (40, 528, 64)],
        200,
        2.0 * 2f64.powi(-9),
    );
}

#[test]
fn activation_rows_quantise_as_the_reference_row_function() {
    // m ≥ 8 takes the parallel route; both must equal quantize_row_q8_0_ref row by row.
    for m in [1, 8, 13] {
        let k = 96;
        let mut rng = ChaCha8Rng::seed_from_u64(m as u64);
        let x = random(&mut rng, m * k, 3.0);
        let a = ActQ8::quantize(&x, m, k);
        for i in 0..m {
            assert_eq!(a.blocks(i), quantize_row_q8_0(&x[i * k..(i + 1) * k]), "m {m} row {i}");
        }
    }
}

#[test]
fn bad_shapes_are_errors_naming_the_tensor() {
    let name = "model.layers.0.mlp.down_proj.weight";
    let e = QuantMatrix::from_f32(name, QuantFormat::Q4_0, 4, 100, &[0.0; 400]).unwrap_err();
    assert!(matches!(e, QuantError::Width { k: 100, rows: 4, .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(name) && msg.contains("(4, 100)") && msg.contains("multiple of 32"), "{msg}");
    let e = QuantMatrix::from_f32(name, QuantFormat::Q8_0, 4, 64, &[0.0; 255]).unwrap_err();
    assert!(matches!(e, QuantError::Length { expected: 256, found: 255, .. }) && e.to_string().contains(name), "{e}");
    assert!(matches!(QuantMatrix::from_f32(name, QuantFormat::Q8_0, 1, 0, &[]), Err(QuantError::Width { .. })));

    let wm = QuantMatrix::from_f32("w", QuantFormat::Q8_0, 3, 64, &[0.5; 192]).unwrap();
    let mut y = vec![0f32; 3];
    assert!(matches!(matvec(&wm, &[0.0; 63], &mut y, 1), Err(QuantError::Length { expected: 64, found: 63, .. })));
    assert!(matches!(matvec(&wm, &[0.0; 64], &mut y[..2], 1), Err(QuantError::Length { expected: 3, found: 2, .. })));
    assert!(matches!(
        matmul_bf16_panels(&wm, &[0.0; 64], 2, &mut [0.0; 6]),
        Err(QuantError::Length { expected: 128, .. })
    ));

    // A non-finite scale in blocks read from elsewhere.
    let mut blocks = wm.q8_0_blocks().unwrap().to_vec();
    blocks[4].d = half::f16::INFINITY;
    assert!(matches!(QuantMatrix::from_q8_0_blocks("t", 3, 64, &blocks), Err(QuantError::Scale { block: 4, .. })));

    // Forcing a path: an error exactly when this CPU cannot run it.
    for path in QuantPath::ALL {
        let r = matmul_with(path, &wm, &[1.0; 64], 1, &mut y, 1);
        assert_eq!(r.is_ok(), path.available(), "{path}: {r:?}");
        if r.is_ok() {
            // All-0.5 weights and all-one inputs: q = 127 (d = 0.5/127) times q = 127 (d = 1/127).
            let d = half::f16::from_f32(0.5 / 127.0).to_f32() * half::f16::from_f32(1.0 / 127.0).to_f32();
            let want = 2.0 * (127 * 127 * 32) as f32 * d;
            assert!(y.iter().all(|v| (v - want).abs() <= 1e-6 * want), "{path}: {y:?} vs {want}");
        }
    }
}

/// Several rows at once (a batched decode step) give each row exactly what it gets alone, on every
/// path this CPU runs: the multi-row kernels share the weight block, not the arithmetic order.
#[test]
fn rows_together_equal_rows_alone_on_every_path() {
    let (n, k) = (37, 320);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let w = random(&mut rng, n * k, 1.0);
    for (fmt, layout) in [QuantFormat::Q8_0, QuantFormat::Q4_0].into_iter().flat_map(|f| LAYOUTS.map(|l| (f, l))) {
        let wm = QuantMatrix::from_f32("w", fmt, n, k, &w).unwrap().with_layout(layout);
        for path in QuantPath::ALL.into_iter().filter(|p| p.available()) {
            for m in [4, 7, 9] {
                let x = random(&mut rng, m * k, 2.0);
                let mut together = vec![0f32; m * n];
                matmul_with(path, &wm, &x, m, &mut together, 1).unwrap();
                for i in 0..m {
                    let mut alone = vec![0f32; n];
                    matmul_with(path, &wm, &x[i * k..(i + 1) * k], 1, &mut alone, 1).unwrap();
                    assert_eq!(&together[i * n..(i + 1) * n], &alone[..], "{fmt} {layout:?} {path} m {m} row {i}");
                }
            }
        }
    }
}

/// Both layouts hold the same blocks: converting either way gives GGML's bytes back, block for block
/// and row by row (with a partial last group: 16·2 + 5 rows), and every path gives the same products
/// on either layout up to summation order (the row kernels on unpacked groups: exactly).
#[test]
fn layouts_hold_the_same_blocks() {
    let (n, k) = (37, 96);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let w = random(&mut rng, n * k, 1.0);
    let x = random(&mut rng, 3 * k, 1.0);
    for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
        let rows = QuantMatrix::from_f32("w", fmt, n, k, &w).unwrap().with_layout(QuantLayout::Rows);
        let x16 = rows.clone().with_layout(QuantLayout::Interleaved16);
        assert_eq!((rows.layout(), x16.layout()), (QuantLayout::Rows, QuantLayout::Interleaved16));
        assert_eq!(x16.to_bytes(), rows.to_bytes(), "{fmt}");
        assert_eq!(x16.q8_0_blocks(), rows.q8_0_blocks(), "{fmt}");
        assert_eq!(x16.q4_0_blocks(), rows.q4_0_blocks(), "{fmt}");
        assert_eq!(x16.dequantize(), rows.dequantize(), "{fmt}");
        assert_eq!(x16.bytes(), rows.bytes(), "{fmt}");
        assert_eq!(x16.clone().with_layout(QuantLayout::Rows).to_bytes(), rows.to_bytes(), "{fmt}: back to rows");
        // From blocks read elsewhere: the native layout, the same bytes.
        let from = match fmt {
            QuantFormat::Q8_0 => QuantMatrix::from_q8_0_blocks("w", n, k, &rows.q8_0_blocks().unwrap()).unwrap(),
            QuantFormat::Q4_0 => QuantMatrix::from_q4_0_blocks("w", n, k, &rows.q4_0_blocks().unwrap()).unwrap(),
        };
        assert_eq!(from.layout(), QuantLayout::native());
        assert_eq!(from.to_bytes(), rows.to_bytes(), "{fmt}: from blocks");
        for path in QuantPath::available_paths() {
            let (mut a, mut b) = (vec![0f32; 3 * n], vec![0f32; 3 * n]);
            matmul_with(path, &rows, &x, 3, &mut a, 2).unwrap();
            matmul_with(path, &x16, &x, 3, &mut b, 2).unwrap();
            if path == QuantPath::Avx512Vnni {
                for (p, q) in a.iter().zip(&b) {
                    assert!((p - q).abs() <= 1e-5 * (1.0 + p.abs()), "{fmt} {path}: {p} vs {q}");
                }
            } else {
                assert_eq!(a, b, "{fmt} {path}: the same row kernel on the same blocks");
            }
        }
    }
}
