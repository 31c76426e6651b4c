//! GGML Q8_0 / Q4_0 against the `gguf` Python package: blocks byte-identical, dequantised values
//! bit-identical, the activation quantisation identical to GGML's, and the products of every kernel
//! path this CPU runs within a stated bound of an f64 product of the dequantised blocks.
//! Fixtures: `tests/fixtures/quant.safetensors`, made by `make_quant_fixtures.py` (beside it).
use half::bf16;
use quant::{
    block::{dequantize_row_q4_0, dequantize_row_q8_0, quantize_row_q4_0, quantize_row_q8_0},
    matmul_with, ActQ8, BlockQ4_0, BlockQ8_0, QuantFormat, QuantMatrix, QuantPath, QK,
};
use safetensors::SafeTensors;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant.safetensors");

struct Fixture(Vec<u8>);

impl Fixture {
    fn load() -> Self {
        Self(std::fs::read(FIXTURE).expect("fixture file"))
    }

    /// (shape, raw little-endian bytes) of a tensor.
    fn raw(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.0).expect("safetensors");
        let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture tensor {name}"));
        (t.shape().to_vec(), t.data().to_vec())
    }

    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (s, b) = self.raw(name);
        (s, b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }

    fn f64s(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let (s, b) = self.raw(name);
        (s, b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect())
    }
}

fn bytes_q8(blocks: &[BlockQ8_0]) -> Vec<u8> {
    blocks.iter().flat_map(|b| b.to_bytes()).collect()
}

fn bytes_q4(blocks: &[BlockQ4_0]) -> Vec<u8> {
    blocks.iter().flat_map(|b| b.to_bytes()).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn quantisation_is_byte_identical_to_gguf() {
    let f = Fixture::load();
    for case in ["random", "edge", "bf16"] {
        let (shape, x) = f.f32s(&format!("{case}.x"));
        let (rows, k) = (shape[0], shape[1]);
        // Row functions (quantize_row_*_ref) and the matrix constructor.
        let q8: Vec<u8> = x.chunks_exact(k).flat_map(|r| bytes_q8(&quantize_row_q8_0(r))).collect();
        let q4: Vec<u8> = x.chunks_exact(k).flat_map(|r| bytes_q4(&quantize_row_q4_0(r))).collect();
        assert_eq!(q8, f.raw(&format!("{case}.q8_0")).1, "{case}: q8_0 blocks");
        assert_eq!(q4, f.raw(&format!("{case}.q4_0")).1, "{case}: q4_0 blocks");
        let m8 = QuantMatrix::from_f32(case, QuantFormat::Q8_0, rows, k, &x).unwrap();
        let m4 = QuantMatrix::from_f32(case, QuantFormat::Q4_0, rows, k, &x).unwrap();
        assert_eq!(m8.to_bytes(), q8, "{case}: q8_0 matrix");
        assert_eq!(m4.to_bytes(), q4, "{case}: q4_0 matrix");
        assert_eq!(m8.bytes(), rows * k / 32 * 34);
        assert_eq!(m4.bytes(), rows * k / 32 * 18);
    }
    // bf16 rows give the same blocks as their f32 values.
    let (shape, xb) = f.raw("bf16.x_bf16");
    let xb: Vec<bf16> = xb.chunks_exact(2).map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect();
    for (fmt, name) in [(QuantFormat::Q8_0, "bf16.q8_0"), (QuantFormat::Q4_0, "bf16.q4_0")] {
        let m = QuantMatrix::from_bf16("bf16", fmt, shape[0], shape[1], &xb).unwrap();
        assert_eq!(m.to_bytes(), f.raw(name).1, "{name} from bf16 rows");
    }
}

#[test]
fn dequantisation_is_bit_identical_to_gguf() {
    let f = Fixture::load();
    for case in ["random", "edge", "bf16"] {
        let (shape, _) = f.f32s(&format!("{case}.x"));
        let (rows, k) = (shape[0], shape[1]);
        let kb = k / QK;
        // From gguf's bytes (not ours), through BlockQ*::from_bytes and the matrix.
        let b8: Vec<BlockQ8_0> = f
            .raw(&format!("{case}.q8_0"))
            .1
            .chunks_exact(34)
            .map(|c| BlockQ8_0::from_bytes(c.try_into().unwrap()))
            .collect();
        let b4: Vec<BlockQ4_0> = f
            .raw(&format!("{case}.q4_0"))
            .1
            .chunks_exact(18)
            .map(|c| BlockQ4_0::from_bytes(c.try_into().unwrap()))
            .collect();
        let mut y8 = vec![0f32; rows * k];
        let mut y4 = vec![0f32; rows * k];
        for r in 0..rows {
            dequantize_row_q8_0(&b8[r * kb..(r + 1) * kb], &mut y8[r * k..(r + 1) * k]);
            dequantize_row_q4_0(&b4[r * kb..(r + 1) * kb], &mut y4[r * k..(r + 1) * k]);
        }
        assert_eq!(bits(&y8), bits(&f.f32s(&format!("{case}.q8_0.deq")).1), "{case}: q8_0 dequantised");
        assert_eq!(bits(&y4), bits(&f.f32s(&format!("{case}.q4_0.deq")).1), "{case}: q4_0 dequantised");
        let m8 = QuantMatrix::from_q8_0_blocks(case, rows, k, &b8).unwrap();
        let m4 = QuantMatrix::from_q4_0_blocks(case, rows, k, &b4).unwrap();
        assert_eq!(bits(&m8.dequantize()), bits(&y8));
        assert_eq!(bits(&m4.dequantize()), bits(&y4));
    }
}

#[test]
fn activation_quantisation_matches_gguf_q8_0() {
    let f = Fixture::load();
    for p in ["prod_k320", "prod_k96", "prod_k2816"] {
        let (shape, x) = f.f32s(&format!("{p}.x"));
        let (m, k) = (shape[0], shape[1]);
        let a = ActQ8::quantize(&x, m, k);
        let ours: Vec<u8> = (0..m).flat_map(|i| bytes_q8(&a.blocks(i))).collect();
        assert_eq!(ours, f.raw(&format!("{p}.x.q8_0")).1, "{p}: activation blocks");
    }
}

/// Every path's product against gguf's f64 product of the dequantised blocks. Bound per output: the
/// integer block sums are exact, so the error is the f32 rounding of the per-block scale products
/// and of the sum over kb blocks: ≤ (kb + 2)·2⁻²⁴·Σ_j |w_j·x_j| (dequantised values).
#[test]
fn products_match_f64_reference_on_every_path() {
    let f = Fixture::load();
    let paths = QuantPath::available_paths();
    eprintln!("quantised kernel paths on this CPU: {paths:?}");
    for p in ["prod_k320", "prod_k96", "prod_k2816"] {
        let (ws, w) = f.f32s(&format!("{p}.w"));
        let (xs, x) = f.f32s(&format!("{p}.x"));
        let (n, k, m) = (ws[0], ws[1], xs[0]);
        let kb = k / QK;
        let xq: Vec<BlockQ8_0> = f
            .raw(&format!("{p}.x.q8_0"))
            .1
            .chunks_exact(34)
            .map(|c| BlockQ8_0::from_bytes(c.try_into().unwrap()))
            .collect();
        let mut xd = vec![0f32; m * k];
        dequantize_row_q8_0(&xq, &mut xd);
        for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            let wm = QuantMatrix::from_f32(p, fmt, n, k, &w).unwrap();
            assert_eq!(wm.to_bytes(), f.raw(&format!("{p}.w.{fmt}")).1, "{p} {fmt}: weight blocks");
            let wd = wm.dequantize();
            let (_, want) = f.f64s(&format!("{p}.y.{fmt}"));
            for &path in &paths {
                for threads in [1, 2, 3] {
                    let mut y = vec![f32::NAN; m * n];
                    matmul_with(path, &wm, &x, m, &mut y, threads).unwrap();
                    for i in 0..m {
                        for j in 0..n {
                            let s: f64 = (0..k).map(|c| (xd[i * k + c] as f64 * wd[j * k + c] as f64).abs()).sum();
                            let tol = (kb + 2) as f64 * 2f64.powi(-24) * s;
                            let err = (y[i * n + j] as f64 - want[i * n + j]).abs();
                            assert!(
                                err <= tol,
                                "{p} {fmt} {path} threads {threads} ({i}, {j}): {} vs {} (tol {tol:e})",
                                y[i * n + j],
                                want[i * n + j]
                            );
                        }
                    }
                }
            }
        }
    }
}
