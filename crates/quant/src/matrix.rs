//! [`QuantMatrix`]: a (rows, k) weight matrix in torch `nn.Linear` layout (one output feature per row)
//! stored as GGML blocks, in one of two [`QuantLayout`]s: each row its k/32 blocks in order (GGML's
//! tensor layout), or groups of [`GROUP_ROWS`] rows with their blocks interleaved (for the AVX-512
//! VNNI kernel; the layout a CPU with that kernel gets by default).
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

/// How a [`QuantMatrix`] stores its blocks. Both hold GGML's blocks bit for bit (scales, values) in
/// the same number of bytes; they differ in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantLayout {
    /// GGML's tensor layout: row r is blocks r·k/32 .. (r + 1)·k/32, each `block_q8_0` / `block_q4_0`.
    Rows,
    /// Groups of [`GROUP_ROWS`] consecutive rows (the last group padded with rows of zero bytes and
    /// scales), and in a group,
    /// block column b of its 16 rows together: the 16 f16 scales (32 bytes, row order), then the values
    /// as 64-byte lines, line t holding 4 consecutive bytes of each row (row l at bytes 4l..4l + 4), so
    /// that one `vpdpbusd` multiplies 4 weights of 16 rows by one broadcast group of 4 activations and
    /// each i32 lane is one output row:
    /// - Q8_0: 8 lines; line t holds values 4t..4t + 4 of each row, each stored as value + 128 (u8).
    /// - Q4_0: 4 lines; line c holds GGML's packed bytes 4c..4c + 4 of each row (low nibbles: elements
    ///   4c..4c + 4, high nibbles: elements 16 + 4c..), the nibbles unchanged (value + 8).
    ///
    /// Values and scales are kept apart (64-byte aligned lines, 32-byte aligned scale vectors). The idea
    /// is that of ggml's repacked CPU formats (`ggml-cpu/repack.cpp`, `block_q4_0x8`, `block_q8_0x4`:
    /// rows interleaved so one activation load serves several rows); this grouping is our own.
    Interleaved16,
}

impl QuantLayout {
    /// The layout new matrices get: [`QuantLayout::Interleaved16`] when this CPU runs the AVX-512
    /// VNNI kernel (its layout), else [`QuantLayout::Rows`] (the AVX2 and scalar kernels' layout).
    /// `VLM_QUANT_LAYOUT=rows` or `=interleaved16` overrides this (read once per process; for A/B
    /// measurements).
    pub fn native() -> QuantLayout {
        static NATIVE: std::sync::OnceLock<QuantLayout> = std::sync::OnceLock::new();
        *NATIVE.get_or_init(|| match std::env::var("VLM_QUANT_LAYOUT").as_deref() {
            Ok("rows") => QuantLayout::Rows,
            Ok("interleaved16") => QuantLayout::Interleaved16,
            _ if super::QuantPath::best() == super::QuantPath::Avx512Vnni => QuantLayout::Interleaved16,
            _ => QuantLayout::Rows,
        })
    }
}

/// Rows per group of [`QuantLayout::Interleaved16`]: one per i32 lane of a 512-bit vector.
pub const GROUP_ROWS: usize = 16;

/// One 64-byte line of [`QuantLayout::Interleaved16`] values (64-byte aligned).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

/// The 16 f16 scales (bit patterns) of one block column of a group (32-byte aligned).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub(crate) struct Scales(pub(crate) [u16; GROUP_ROWS]);

/// A matrix in [`QuantLayout::Interleaved16`]: groups·kb·`lines` lines (group g, block column b, line
/// t at (g·kb + b)·lines + t) and groups·kb scale vectors (at g·kb + b).
#[derive(Debug, Clone)]
pub(crate) struct Interleaved {
    pub(crate) format: QuantFormat,
    pub(crate) qs: Vec<Line>,
    pub(crate) d: Vec<Scales>,
}

impl Interleaved {
    /// Lines per block column: 8 (Q8_0) or 4 (Q4_0).
    pub(crate) fn lines(format: QuantFormat) -> usize {
        match format {
            QuantFormat::Q8_0 => 8,
            QuantFormat::Q4_0 => 4,
        }
    }

    /// Row l (< 16) of block column `col` (= g·kb + b) as a GGML Q8_0 block.
    pub(crate) fn q8_0(&self, col: usize, l: usize) -> BlockQ8_0 {
        let lines = &self.qs[col * 8..col * 8 + 8];
        let mut qs = [0i8; QK];
        for (t, line) in lines.iter().enumerate() {
            for i in 0..4 {
                qs[4 * t + i] = (line.0[4 * l + i] ^ 0x80) as i8;
            }
        }
        BlockQ8_0 { d: f16::from_bits(self.d[col].0[l]), qs }
    }

    /// Row l (< 16) of block column `col` as a GGML Q4_0 block.
    pub(crate) fn q4_0(&self, col: usize, l: usize) -> BlockQ4_0 {
        let lines = &self.qs[col * 4..col * 4 + 4];
        let mut qs = [0u8; QK / 2];
        for (c, line) in lines.iter().enumerate() {
            qs[4 * c..4 * c + 4].copy_from_slice(&line.0[4 * l..4 * l + 4]);
        }
        BlockQ4_0 { d: f16::from_bits(self.d[col].0[l]), qs }
    }

    /// Writes GGML block `blk` as row l of one block column (its lines `qs`, its scales `d`).
    fn put_q8_0(qs: &mut [Line], d: &mut Scales, l: usize, blk: &BlockQ8_0) {
        for (t, line) in qs.iter_mut().enumerate().take(8) {
            for i in 0..4 {
                line.0[4 * l + i] = blk.qs[4 * t + i] as u8 ^ 0x80;
            }
        }
        d.0[l] = blk.d.to_bits();
    }

    /// Writes GGML block `blk` as row l of one block column (its lines `qs`, its scales `d`).
    fn put_q4_0(qs: &mut [Line], d: &mut Scales, l: usize, blk: &BlockQ4_0) {
        for (c, line) in qs.iter_mut().enumerate().take(4) {
            line.0[4 * l..4 * l + 4].copy_from_slice(&blk.qs[4 * c..4 * c + 4]);
        }
        d.0[l] = blk.d.to_bits();
    }

    /// The interleaved form of `rows` rows of kb blocks each, made group by group on rayon's pool:
    /// `group(g, scratch)` fills the GGML blocks of group g's rows (row-major, kb per row) into a
    /// scratch of 16 rows, `put` writes each into place; rows past `rows` keep zero bytes and scales.
    fn build<B: Copy + Send + Sync>(
        format: QuantFormat,
        rows: usize,
        kb: usize,
        zero: B,
        group: &(impl Fn(usize, &mut [B]) + Sync),
        put: fn(&mut [Line], &mut Scales, usize, &B),
    ) -> Self {
        let lines = Self::lines(format);
        let groups = rows.div_ceil(GROUP_ROWS);
        let mut qs = vec![Line([0; 64]); groups * kb * lines];
        let mut d = vec![Scales([0; GROUP_ROWS]); groups * kb];
        if kb > 0 {
            qs.par_chunks_mut(kb * lines).zip(d.par_chunks_mut(kb)).enumerate().for_each_init(
                || vec![zero; GROUP_ROWS * kb],
                |scratch, (g, (qs, d))| {
                    scratch.fill(zero);
                    group(g, scratch);
                    let n = (rows - g * GROUP_ROWS).min(GROUP_ROWS);
                    for l in 0..n {
                        for b in 0..kb {
                            put(&mut qs[b * lines..(b + 1) * lines], &mut d[b], l, &scratch[l * kb + b]);
                        }
                    }
                },
            );
        }
        Self { format, qs, d }
    }
}

impl Interleaved {
    /// The interleaved form of `rows` rows of kb GGML blocks, row-major in `v` (at least rows·kb).
    fn from_rows<B: Copy + Send + Sync>(
        format: QuantFormat,
        rows: usize,
        kb: usize,
        v: &[B],
        zero: B,
        put: fn(&mut [Line], &mut Scales, usize, &B),
    ) -> Self {
        let group = |g: usize, out: &mut [B]| {
            let r = g * GROUP_ROWS;
            let n = GROUP_ROWS.min(rows - r);
            out[..n * kb].copy_from_slice(&v[r * kb..(r + n) * kb]);
        };
        Self::build(format, rows, kb, zero, &group, put)
    }
}

/// The blocks of a matrix: in [`QuantLayout::Rows`], rows·k/32 blocks followed by [`PAD_BLOCKS`] zero
/// blocks (for the row-layout AVX-512 kernel's reads); or [`Interleaved`].
#[derive(Debug, Clone)]
pub(crate) enum Blocks {
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
    X16(Interleaved),
}

/// A (rows, k) matrix of GGML blocks, k a multiple of 32, in the [`QuantLayout`] of
/// [`QuantMatrix::layout`] (made with [`QuantLayout::native`]; [`QuantMatrix::with_layout`] converts).
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
    /// (`quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`), rows in parallel on rayon's pool, straight
    /// into the [`QuantLayout::native`] layout (no second copy of the blocks).
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
        if QuantLayout::native() == QuantLayout::Interleaved16 {
            let kb = k / QK;
            // A group's 16 rows quantised into the scratch, then interleaved.
            fn group<'a, B: 'a>(
                rows: usize,
                k: usize,
                row: &'a (impl Fn(usize, &mut [f32]) + Sync),
                q: fn(&[f32; QK]) -> B,
            ) -> impl Fn(usize, &mut [B]) + Sync + 'a {
                move |g, out| {
                    let mut buf = vec![0f32; k];
                    let kb = k / QK;
                    for l in 0..GROUP_ROWS.min(rows - g * GROUP_ROWS) {
                        row(g * GROUP_ROWS + l, &mut buf);
                        for (d, c) in out[l * kb..(l + 1) * kb].iter_mut().zip(buf.chunks_exact(QK)) {
                            *d = q(c.try_into().expect("32 values"));
                        }
                    }
                }
            }
            let x = match format {
                QuantFormat::Q8_0 => Interleaved::build(
                    format,
                    rows,
                    kb,
                    BlockQ8_0::ZERO,
                    &group(rows, k, &row, quantize_block_q8_0),
                    Interleaved::put_q8_0,
                ),
                QuantFormat::Q4_0 => Interleaved::build(
                    format,
                    rows,
                    kb,
                    BlockQ4_0::ZERO,
                    &group(rows, k, &row, quantize_block_q4_0),
                    Interleaved::put_q4_0,
                ),
            };
            return Self { rows, k, blocks: Blocks::X16(x) };
        }
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
        Ok(Self::from_rows_layout(rows, k, Blocks::Q8_0(Vec::new()), blocks, &[]))
    }

    /// A Q4_0 matrix from existing blocks: `blocks.len()` must be rows·k/32; errors as
    /// [`QuantMatrix::from_q8_0_blocks`].
    pub fn from_q4_0_blocks(tensor: &str, rows: usize, k: usize, blocks: &[BlockQ4_0]) -> Result<Self, QuantError> {
        check_shape(tensor, rows, k, blocks.len() * QK)?;
        if let Some(block) = blocks.iter().position(|b| !b.d.is_finite()) {
            return Err(QuantError::Scale { tensor: tensor.to_string(), block });
        }
        Ok(Self::from_rows_layout(rows, k, Blocks::Q4_0(Vec::new()), &[], blocks))
    }

    /// A matrix in [`QuantLayout::native`] from GGML row-major blocks (`q8` when `kind` is Q8_0, else
    /// `q4`; `kind`'s own vector is ignored).
    fn from_rows_layout(rows: usize, k: usize, kind: Blocks, q8: &[BlockQ8_0], q4: &[BlockQ4_0]) -> Self {
        let kb = k / QK;
        let blocks = match (QuantLayout::native(), kind) {
            (QuantLayout::Interleaved16, Blocks::Q8_0(_)) => Blocks::X16(Interleaved::from_rows(
                QuantFormat::Q8_0,
                rows,
                kb,
                q8,
                BlockQ8_0::ZERO,
                Interleaved::put_q8_0,
            )),
            (QuantLayout::Interleaved16, _) => Blocks::X16(Interleaved::from_rows(
                QuantFormat::Q4_0,
                rows,
                kb,
                q4,
                BlockQ4_0::ZERO,
                Interleaved::put_q4_0,
            )),
            (QuantLayout::Rows, Blocks::Q8_0(_)) => {
                let mut v = Vec::with_capacity(q8.len() + PAD_BLOCKS);
                v.extend_from_slice(q8);
                v.extend(std::iter::repeat_n(BlockQ8_0::ZERO, PAD_BLOCKS));
                Blocks::Q8_0(v)
            }
            (QuantLayout::Rows, _) => {
                let mut v = Vec::with_capacity(q4.len() + PAD_BLOCKS);
                v.extend_from_slice(q4);
                v.extend(std::iter::repeat_n(BlockQ4_0::ZERO, PAD_BLOCKS));
                Blocks::Q4_0(v)
            }
        };
        Self { rows, k, blocks }
    }

    /// The layout of the blocks.
    pub fn layout(&self) -> QuantLayout {
        match self.blocks {
            Blocks::X16(_) => QuantLayout::Interleaved16,
            _ => QuantLayout::Rows,
        }
    }

    /// The same matrix in `layout` (the same blocks bit for bit; a new copy is made, then `self`'s
    /// freed). For tests and A/B measurements: every kernel path runs on either layout, the AVX-512
    /// VNNI kernel fastest on [`QuantLayout::Interleaved16`] and the others on [`QuantLayout::Rows`].
    pub fn with_layout(self, layout: QuantLayout) -> Self {
        if self.layout() == layout {
            return self;
        }
        let (rows, k, kb) = (self.rows, self.k, self.k / QK);
        // Only the other layout reaches here.
        let blocks = match &self.blocks {
            Blocks::X16(_) => match self.format() {
                QuantFormat::Q8_0 => {
                    let mut v = self.q8_0_blocks().expect("q8_0");
                    v.extend(std::iter::repeat_n(BlockQ8_0::ZERO, PAD_BLOCKS));
                    Blocks::Q8_0(v)
                }
                QuantFormat::Q4_0 => {
                    let mut v = self.q4_0_blocks().expect("q4_0");
                    v.extend(std::iter::repeat_n(BlockQ4_0::ZERO, PAD_BLOCKS));
                    Blocks::Q4_0(v)
                }
            },
            Blocks::Q8_0(v) => Blocks::X16(Interleaved::from_rows(
                QuantFormat::Q8_0,
                rows,
                kb,
                v,
                BlockQ8_0::ZERO,
                Interleaved::put_q8_0,
            )),
            Blocks::Q4_0(v) => Blocks::X16(Interleaved::from_rows(
                QuantFormat::Q4_0,
                rows,
                kb,
                v,
                BlockQ4_0::ZERO,
                Interleaved::put_q4_0,
            )),
        };
        Self { rows, k, blocks }
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
        match &self.blocks {
            Blocks::Q8_0(_) => QuantFormat::Q8_0,
            Blocks::Q4_0(_) => QuantFormat::Q4_0,
            Blocks::X16(x) => x.format,
        }
    }

    /// Bytes of the blocks (what a mat-vec reads): rows·k/32·block size.
    pub fn bytes(&self) -> usize {
        self.rows * self.k / QK * self.format().block_bytes()
    }

    /// The Q8_0 blocks (rows·k/32, GGML's row-major order, whatever the layout), or `None` for another
    /// format.
    pub fn q8_0_blocks(&self) -> Option<Vec<BlockQ8_0>> {
        let kb = self.k / QK;
        match &self.blocks {
            Blocks::Q8_0(v) => Some(v[..self.rows * kb].to_vec()),
            Blocks::X16(x) if x.format == QuantFormat::Q8_0 => Some(
                (0..self.rows * kb).map(|i| x.q8_0((i / kb / GROUP_ROWS) * kb + i % kb, i / kb % GROUP_ROWS)).collect(),
            ),
            _ => None,
        }
    }

    /// The Q4_0 blocks (rows·k/32, GGML's row-major order), or `None` for another format.
    pub fn q4_0_blocks(&self) -> Option<Vec<BlockQ4_0>> {
        let kb = self.k / QK;
        match &self.blocks {
            Blocks::Q4_0(v) => Some(v[..self.rows * kb].to_vec()),
            Blocks::X16(x) if x.format == QuantFormat::Q4_0 => Some(
                (0..self.rows * kb).map(|i| x.q4_0((i / kb / GROUP_ROWS) * kb + i % kb, i / kb % GROUP_ROWS)).collect(),
            ),
            _ => None,
        }
    }

    /// Row `r` dequantised (`dequantize_row_q8_0` / `dequantize_row_q4_0`) into `out` (k).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let kb = self.k / QK;
        match &self.blocks {
            Blocks::Q8_0(v) => dequantize_row_q8_0(&v[r * kb..(r + 1) * kb], out),
            Blocks::Q4_0(v) => dequantize_row_q4_0(&v[r * kb..(r + 1) * kb], out),
            Blocks::X16(x) => {
                assert_eq!(out.len(), self.k, "dequantize_row: output length");
                let (col0, l) = ((r / GROUP_ROWS) * kb, r % GROUP_ROWS);
                for (b, o) in out.chunks_exact_mut(QK).enumerate() {
                    match x.format {
                        QuantFormat::Q8_0 => dequantize_row_q8_0(&[x.q8_0(col0 + b, l)], o),
                        QuantFormat::Q4_0 => dequantize_row_q4_0(&[x.q4_0(col0 + b, l)], o),
                    }
                }
            }
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
        match self.format() {
            QuantFormat::Q8_0 => self.q8_0_blocks().expect("q8_0").iter().flat_map(|b| b.to_bytes()).collect(),
            QuantFormat::Q4_0 => self.q4_0_blocks().expect("q4_0").iter().flat_map(|b| b.to_bytes()).collect(),
        }
    }
}
