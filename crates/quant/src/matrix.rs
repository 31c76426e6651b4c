//! [`QuantMatrix`]: a (rows, k) weight matrix in torch `nn.Linear` layout (row-major, one output
//! feature per row) stored as GGML blocks, each row its k/32 blocks in order (GGML's tensor layout).
use half::{bf16, f16};
use rayon::prelude::*;

use super::block::{
    dequantize_row_q4_0, dequantize_row_q8_0, quantize_block_q4_0, quantize_block_q8_0, BlockQ4_0, BlockQ8_0, QK,
};
use super::QuantError;

/// Zero blocks appended after the last row, so that the AVX-512 kernels' 64-byte loads at the last
/// blocks of the last row stay inside the allocation (they read at most 64 bytes from a block's start).
pub(crate) const PAD_BLOCKS: usize = 4;

/// A GGML block weight format (names as in GGML's `ggml_type`: `GGML_TYPE_Q8_0`, `GGML_TYPE_Q4_0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// 8-bit values, 34 bytes per 32 weights (8.5 bits per weight).
    Q8_0,
    /// 4-bit values, 18 bytes per 32 weights (4.5 bits per weight).
    Q4_0,
}

impl QuantFormat {
    /// Bytes of one block of 32 weights.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantFormat::Q8_0 => BlockQ8_0::BYTES,
            QuantFormat::Q4_0 => BlockQ4_0::BYTES,
        }
    }

    /// GGML's name (`q8_0`, `q4_0`).
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Q8_0 => "q8_0",
            QuantFormat::Q4_0 => "q4_0",
        }
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The blocks of a matrix: rows·k/32 blocks followed by [`PAD_BLOCKS`] zero blocks.
#[derive(Debug, Clone)]
pub(crate) enum Blocks {
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
}

/// A (rows, k) matrix of GGML blocks, k a multiple of 32: row r is blocks r·k/32 .. (r + 1)·k/32.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    pub(crate) rows: usize,
    pub(crate) k: usize,
    pub(crate) blocks: Blocks,
}

/// Checks that `data` holds `rows`·`k` values and that `k` is a multiple of 32.
fn check_shape(tensor: &str, rows: usize, k: usize, len: usize) -> Result<(), QuantError> {
    if !k.is_multiple_of(QK) || k == 0 {
        return Err(QuantError::Width { tensor: tensor.to_string(), rows, k });
    }
    if len != rows * k {
        return Err(QuantError::Length {
            what: format!("tensor {tensor} ({rows}×{k})"),
            expected: rows * k,
            found: len,
        });
    }
    Ok(())
}

impl QuantMatrix {
    /// Quantises `data` ((rows, k) row-major f32) with GGML's reference quantisation of `format`
    /// (`quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`), rows in parallel on rayon's pool.
    /// Errors: [`QuantError::Width`] when k is not a positive multiple of 32, [`QuantError::Length`] when
    /// `data.len() != rows·k`; `tensor` names the weight in both.
    pub fn from_f32(
        tensor: &str,
        format: QuantFormat,
        rows: usize,
        k: usize,
        data: &[f32],
    ) -> Result<Self, QuantError> {
        check_shape(tensor, rows, k, data.len())?;
        Ok(Self::quantize_with(format, rows, k, |r, buf| buf.copy_from_slice(&data[r * k..(r + 1) * k])))
    }

    /// As [`QuantMatrix::from_f32`] for bf16 data (each value widened to f32 exactly, then quantised).
    pub fn from_bf16(
        tensor: &str,
        format: QuantFormat,
        rows: usize,
        k: usize,
        data: &[bf16],
    ) -> Result<Self, QuantError> {
        check_shape(tensor, rows, k, data.len())?;
        Ok(Self::quantize_with(format, rows, k, |r, buf| {
            buf.iter_mut().zip(&data[r * k..(r + 1) * k]).for_each(|(o, v)| *o = v.to_f32())
        }))
    }

    /// As [`QuantMatrix::from_f32`] for f16 data.
    pub fn from_f16(
        tensor: &str,
        format: QuantFormat,
        rows: usize,
        k: usize,
        data: &[f16],
    ) -> Result<Self, QuantError> {
        check_shape(tensor, rows, k, data.len())?;
        Ok(Self::quantize_with(format, rows, k, |r, buf| {
            buf.iter_mut().zip(&data[r * k..(r + 1) * k]).for_each(|(o, v)| *o = v.to_f32())
        }))
    }

    fn quantize_with(format: QuantFormat, rows: usize, k: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> Self {
        fn fill<B: Copy + Send>(
            rows: usize,
            k: usize,
            zero: B,
            row: &(impl Fn(usize, &mut [f32]) + Sync),
            q: fn(&[f32; QK]) -> B,
        ) -> Vec<B> {
            let kb = k / QK;
            let mut out = vec![zero; rows * kb + PAD_BLOCKS];
            out[..rows * kb].par_chunks_mut(kb).enumerate().for_each_init(
                || vec![0f32; k],
                |buf, (r, dst)| {
                    row(r, buf);
                    for (d, c) in dst.iter_mut().zip(buf.chunks_exact(QK)) {
                        *d = q(c.try_into().expect("32 values"));
                    }
                },
            );
            out
        }
        let blocks = match format {
            QuantFormat::Q8_0 => Blocks::Q8_0(fill(rows, k, BlockQ8_0::ZERO, &row, quantize_block_q8_0)),
            QuantFormat::Q4_0 => Blocks::Q4_0(fill(rows, k, BlockQ4_0::ZERO, &row, quantize_block_q4_0)),
        };
        Self { rows, k, blocks }
    }

    /// A Q8_0 matrix from existing blocks (e.g. read from a GGUF file): `blocks.len()` must be
    /// rows·k/32. Errors as [`QuantMatrix::from_f32`], and [`QuantError::Scale`] for a non-finite
    /// scale (the kernels multiply padding blocks by zero scales, which needs finite scales).
    pub fn from_q8_0_blocks(tensor: &str, rows: usize, k: usize, blocks: &[BlockQ8_0]) -> Result<Self, QuantError> {
        check_shape(tensor, rows, k, blocks.len() * QK)?;
        if let Some(block) = blocks.iter().position(|b| !b.d.is_finite()) {
            return Err(QuantError::Scale { tensor: tensor.to_string(), block });
        }
        let mut v = blocks.to_vec();
        v.extend(std::iter::repeat_n(BlockQ8_0::ZERO, PAD_BLOCKS));
        Ok(Self { rows, k, blocks: Blocks::Q8_0(v) })
    }

    /// A Q4_0 matrix from existing blocks: `blocks.len()` must be rows·k/32; errors as
    /// [`QuantMatrix::from_q8_0_blocks`].
    pub fn from_q4_0_blocks(tensor: &str, rows: usize, k: usize, blocks: &[BlockQ4_0]) -> Result<Self, QuantError> {
        check_shape(tensor, rows, k, blocks.len() * QK)?;
        if let Some(block) = blocks.iter().position(|b| !b.d.is_finite()) {
            return Err(QuantError::Scale { tensor: tensor.to_string(), block });
        }
        let mut v = blocks.to_vec();
        v.extend(std::iter::repeat_n(BlockQ4_0::ZERO, PAD_BLOCKS));
        Ok(Self { rows, k, blocks: Blocks::Q4_0(v) })
    }

    /// Rows (output features, N).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Width (input features, K), a multiple of 32.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The block format.
    pub fn format(&self) -> QuantFormat {
        match self.blocks {
            Blocks::Q8_0(_) => QuantFormat::Q8_0,
            Blocks::Q4_0(_) => QuantFormat::Q4_0,
        }
    }

    /// Bytes of the blocks (what a mat-vec reads): rows·k/32·block size.
    pub fn bytes(&self) -> usize {
        self.rows * self.k / QK * self.format().block_bytes()
    }

    /// The Q8_0 blocks (rows·k/32, row-major), or `None` for another format.
    pub fn q8_0_blocks(&self) -> Option<&[BlockQ8_0]> {
        match &self.blocks {
            Blocks::Q8_0(v) => Some(&v[..self.rows * self.k / QK]),
            _ => None,
        }
    }

    /// The Q4_0 blocks (rows·k/32, row-major), or `None` for another format.
    pub fn q4_0_blocks(&self) -> Option<&[BlockQ4_0]> {
        match &self.blocks {
            Blocks::Q4_0(v) => Some(&v[..self.rows * self.k / QK]),
            _ => None,
        }
    }

    /// Row `r` dequantised (`dequantize_row_q8_0` / `dequantize_row_q4_0`) into `out` (k).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let kb = self.k / QK;
        match &self.blocks {
            Blocks::Q8_0(v) => dequantize_row_q8_0(&v[r * kb..(r + 1) * kb], out),
            Blocks::Q4_0(v) => dequantize_row_q4_0(&v[r * kb..(r + 1) * kb], out),
        }
    }

    /// The whole matrix dequantised, (rows, k) row-major f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.k];
        out.par_chunks_mut(self.k).enumerate().for_each(|(r, row)| self.dequantize_row(r, row));
        out
    }

    /// The raw GGML bytes of all blocks in order (what a GGUF tensor holds).
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.rows * self.k / QK;
        match &self.blocks {
            Blocks::Q8_0(v) => v[..n].iter().flat_map(|b| b.to_bytes()).collect(),
            Blocks::Q4_0(v) => v[..n].iter().flat_map(|b| b.to_bytes()).collect(),
        }
    }
}
