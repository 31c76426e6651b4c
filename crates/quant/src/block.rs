//! GGML's Q8_0 and Q4_0 blocks: 32 weights with one f16 scale, their reference quantisation and
//! dequantisation.
//!
//! Source: ggml `ggml-common.h` (`block_q8_0`, `block_q4_0`, `QK8_0 = QK4_0 = 32`) and `ggml-quants.c`
//! (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`, `dequantize_row_q8_0`, `dequantize_row_q4_0`).
//! The rounding and scale rules below follow those functions step for step, so a block made here is
//! byte-identical to GGML's (and to the `gguf` Python package's `gguf.quants.quantize`):
//! - Q8_0: `d = max|x| / 127` (f32), `id = 1/d` (0 when `d = 0`), `q = roundf(x·id)` (half away from
//!   zero); the stored scale is `d` rounded to f16 (nearest-even), while `id` comes from the f32 `d`.
//! - Q4_0: `max` is the first element of largest magnitude (sign kept), `d = max / −8`, `id = 1/d`,
//!   `q = min(15, trunc(x·id + 8.5))`; element j (< 16) in the low nibble of byte j, element 16 + j in
//!   its high nibble; value = (q − 8)·d.
use half::f16;

/// Weights per block (GGML's `QK8_0` and `QK4_0`).
pub const QK: usize = 32;

/// GGML `block_q8_0`: value j = `qs[j]`·`d`. 34 bytes, no padding (`repr(C)`, alignment 2).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quantised values.
    pub qs: [i8; QK],
}

/// GGML `block_q4_0`: byte j holds element j in its low nibble and element 16 + j in its high nibble,
/// value = (nibble − 8)·`d`. 18 bytes, no padding (`repr(C)`, alignment 2).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Packed 4-bit values.
    pub qs: [u8; QK / 2],
}

/// Blocks are equal when their bytes are (the scale compared by bit pattern: −0 ≠ +0, NaN = NaN).
impl PartialEq for BlockQ8_0 {
    fn eq(&self, o: &Self) -> bool {
        self.d.to_bits() == o.d.to_bits() && self.qs == o.qs
    }
}
impl Eq for BlockQ8_0 {}

/// Blocks are equal when their bytes are.
impl PartialEq for BlockQ4_0 {
    fn eq(&self, o: &Self) -> bool {
        self.d.to_bits() == o.d.to_bits() && self.qs == o.qs
    }
}
impl Eq for BlockQ4_0 {}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34 && std::mem::size_of::<BlockQ4_0>() == 18);

impl BlockQ8_0 {
    /// Size of one block in bytes (GGML's `sizeof(block_q8_0)`).
    pub const BYTES: usize = 34;
    /// An all-zero block (scale 0).
    pub const ZERO: Self = Self { d: f16::ZERO, qs: [0; QK] };

    /// The block's 34 bytes as GGML stores them (scale little-endian, then `qs`).
    pub fn to_bytes(&self) -> [u8; 34] {
        let mut b = [0u8; 34];
        b[..2].copy_from_slice(&self.d.to_bits().to_le_bytes());
        for (o, q) in b[2..].iter_mut().zip(self.qs) {
            *o = q as u8;
        }
        b
    }

    /// The block stored in `b` (GGML layout).
    pub fn from_bytes(b: &[u8; 34]) -> Self {
        let mut qs = [0i8; QK];
        for (q, v) in qs.iter_mut().zip(&b[2..]) {
            *q = *v as i8;
        }
        Self { d: f16::from_bits(u16::from_le_bytes([b[0], b[1]])), qs }
    }
}

impl BlockQ4_0 {
    /// Size of one block in bytes (GGML's `sizeof(block_q4_0)`).
    pub const BYTES: usize = 18;
    /// An all-zero block (scale 0).
    pub const ZERO: Self = Self { d: f16::ZERO, qs: [0; QK / 2] };

    /// The block's 18 bytes as GGML stores them (scale little-endian, then `qs`).
    pub fn to_bytes(&self) -> [u8; 18] {
        let mut b = [0u8; 18];
        b[..2].copy_from_slice(&self.d.to_bits().to_le_bytes());
        b[2..].copy_from_slice(&self.qs);
        b
    }

    /// The block stored in `b` (GGML layout).
    pub fn from_bytes(b: &[u8; 18]) -> Self {
        let mut qs = [0u8; QK / 2];
        qs.copy_from_slice(&b[2..]);
        Self { d: f16::from_bits(u16::from_le_bytes([b[0], b[1]])), qs }
    }

    /// The 32 signed 4-bit values (−8..=7) in element order.
    pub fn values(&self) -> [i8; QK] {
        let mut v = [0i8; QK];
        for j in 0..QK / 2 {
            v[j] = (self.qs[j] & 0x0F) as i8 - 8;
            v[j + QK / 2] = (self.qs[j] >> 4) as i8 - 8;
        }
        v
    }
}

/// C's `roundf` (half away from zero) for |v| < 2²³, in plain arithmetic: the integer part by
/// truncation, then one up (in magnitude) when the exact remainder is at least one half.
#[inline(always)]
pub(crate) fn round_half_away(v: f32) -> i32 {
    let a = v.abs();
    let t = a as i32;
    let r = if a - t as f32 >= 0.5 { t + 1 } else { t };
    if v < 0.0 {
        -r
    } else {
        r
    }
}

/// `quantize_row_q8_0_ref` for one block of 32 values.
pub fn quantize_block_q8_0(x: &[f32; QK]) -> BlockQ8_0 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK];
    for (q, v) in qs.iter_mut().zip(x) {
        *q = round_half_away(v * id) as i8;
    }
    BlockQ8_0 { d: f16::from_f32(d), qs }
}

/// `quantize_row_q4_0_ref` for one block of 32 values.
pub fn quantize_block_q4_0(x: &[f32; QK]) -> BlockQ4_0 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let nib = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = nib(x[j]) | (nib(x[QK / 2 + j]) << 4);
    }
    BlockQ4_0 { d: f16::from_f32(d), qs }
}

/// `quantize_row_q8_0_ref`: `x` (k) → k/32 blocks. Panics unless `x.len()` is a multiple of 32 (the
/// matrix constructors check widths and return errors).
pub fn quantize_row_q8_0(x: &[f32]) -> Vec<BlockQ8_0> {
    assert!(x.len().is_multiple_of(QK), "quantize_row_q8_0: length {} not a multiple of 32", x.len());
    x.chunks_exact(QK).map(|c| quantize_block_q8_0(c.try_into().expect("32 values"))).collect()
}

/// `quantize_row_q4_0_ref`: `x` (k) → k/32 blocks. Panics unless `x.len()` is a multiple of 32.
pub fn quantize_row_q4_0(x: &[f32]) -> Vec<BlockQ4_0> {
    assert!(x.len().is_multiple_of(QK), "quantize_row_q4_0: length {} not a multiple of 32", x.len());
    x.chunks_exact(QK).map(|c| quantize_block_q4_0(c.try_into().expect("32 values"))).collect()
}

/// `dequantize_row_q8_0`: blocks → `y` (32 per block), value = q·d in f32.
pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0], y: &mut [f32]) {
    assert_eq!(y.len(), blocks.len() * QK, "dequantize_row_q8_0: output length");
    for (b, out) in blocks.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, q) in out.iter_mut().zip(b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// `dequantize_row_q4_0`: blocks → `y` (32 per block), value = (nibble − 8)·d in f32.
pub fn dequantize_row_q4_0(blocks: &[BlockQ4_0], y: &mut [f32]) {
    assert_eq!(y.len(), blocks.len() * QK, "dequantize_row_q4_0: output length");
    for (b, out) in blocks.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, v) in out.iter_mut().zip(b.values()) {
            *o = v as f32 * d;
        }
    }
}
