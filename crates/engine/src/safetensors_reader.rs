//! Weights read from safetensors files tensor by tensor with positioned reads, as a candle
//! [`VarBuilder`] backend.
//!
//! candle's memory-mapped builder copies each tensor out of the map; the mapped pages it touched stay
//! in the process's resident set for as long as the map lives, so a loaded model briefly counts twice
//! (the copy plus the mapped file). Here each tensor is read (`pread`) straight into the buffer that
//! becomes its storage: the resident set holds the weights once (plus, while a tensor is converted to
//! another dtype, that one tensor's source). The header (an 8-byte little-endian length, a JSON table of
//! dtype/shape/data offsets) is parsed and validated by the `safetensors` crate
//! (`SafeTensors::read_metadata` over a memory map of the file, which touches only the header's pages).
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use half::{bf16, f16};

use crate::{Error, Result};

/// Where one tensor lives.
struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte offset of the data in the file (its length, shape × dtype size, checked in `open`).
    start: u64,
}

/// All tensors of a set of safetensors files (a single file or the shards of an index).
pub struct SafetensorsReader {
    files: Vec<(PathBuf, File)>,
    tensors: HashMap<String, Entry>,
}

/// The candle dtype of a safetensors dtype.
fn st_dtype(d: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match d {
        S::U8 => DType::U8,
        S::U32 => DType::U32,
        S::I64 => DType::I64,
        S::BF16 => DType::BF16,
        S::F16 => DType::F16,
        S::F32 => DType::F32,
        S::F64 => DType::F64,
        _ => return None,
    })
}

/// One tensor of a parsed safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderTensor {
    /// Tensor name.
    pub name: String,
    /// Its dtype.
    pub dtype: DType,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Absolute byte offset of its data in the file.
    pub start: u64,
}

/// Parses and validates the header of a safetensors file given as `bytes` (the whole file, or at
/// least as many bytes as the file holds: data offsets are checked against `bytes.len()`); `path`
/// names the file in errors. The byte-level entry point of [`SafetensorsReader::open`] (also fed by
/// the fuzz targets).
///
/// Errors: [`Error::Checkpoint`] naming `path` for fewer than 8 bytes, a header length beyond the
/// file, a header that is not valid JSON / safetensors metadata, data past the end (truncated), or a
/// tensor dtype candle cannot hold.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<HeaderTensor>> {
    let err = |msg: String| Error::Checkpoint { path: path.to_path_buf(), msg };
    if bytes.len() < 8 {
        return Err(err(format!("{} bytes: too short for a safetensors file (truncated or empty)", bytes.len())));
    }
    let (n, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
        err(match e {
            safetensors::SafeTensorError::MetadataIncompleteBuffer => {
                format!(
                    "the tensors' data does not match the file's length ({} bytes): truncated or corrupt",
                    bytes.len()
                )
            }
            e => format!("not a valid safetensors file: {e}"),
        })
    })?;
    let mut out = Vec::new();
    for (name, info) in meta.tensors() {
        let dtype = st_dtype(info.dtype)
            .ok_or_else(|| err(format!("tensor `{name}` has dtype {:?}, which is not supported", info.dtype)))?;
        let start = (8 + n)
            .checked_add(info.data_offsets.0)
            .ok_or_else(|| err(format!("tensor `{name}`: data offset overflows")))? as u64;
        out.push(HeaderTensor { name, dtype, shape: info.shape.clone(), start });
    }
    Ok(out)
}

impl SafetensorsReader {
    /// Opens `paths` and parses their headers (no tensor data is read).
    ///
    /// Errors: [`Error::Io`] for an unreadable file; [`Error::Checkpoint`] naming the file for a
    /// header that is not valid safetensors, data past the end of the file (truncated), or a tensor
    /// dtype candle cannot hold.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut tensors = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            let io = |source| Error::Io { path: p.clone(), source };
            let f = File::open(p).map_err(io)?;
            let size = f.metadata().map_err(io)?.len();
            if size < 8 {
                // Too short to map usefully (an empty file cannot be mapped): the parser's error.
                parse_header(p, &[0u8; 8][..size as usize])?;
            }
            // SAFETY: the map is read-only and dropped before this function returns; only the header
            // bytes are read through it (the crate checks the data offsets against the file's length).
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
            debug_assert_eq!(map.len() as u64, size);
            for h in parse_header(p, &map)? {
                tensors.insert(h.name, Entry { file: i, dtype: h.dtype, shape: h.shape, start: h.start });
            }
            drop(map);
            files.push((p.clone(), f));
        }
        Ok(Self { files, tensors })
    }

    /// A [`VarBuilder`] over these files that converts every tensor to `dtype` on load.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    /// Reads tensor `name` in its stored dtype. Errors: unknown name, I/O errors.
    pub fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.to_string() }.bt())?;
        let (path, file) = &self.files[e.file];
        let n: usize = e.shape.iter().product();
        let read = |buf: &mut [u8]| {
            file.read_exact_at(buf, e.start)
                .map_err(|err| candle_core::Error::Msg(format!("{}: reading tensor `{name}`: {err}", path.display())))
        };
        let shape = Shape::from(e.shape.clone());
        /// Reads into a typed buffer and hands it to candle without another copy.
        fn typed<T: candle_core::WithDType + Default + Copy>(
            n: usize,
            shape: Shape,
            device: &Device,
            read: impl Fn(&mut [u8]) -> candle_core::Result<()>,
        ) -> candle_core::Result<Tensor> {
            let mut v = vec![T::default(); n];
            // SAFETY: the plain-old-data values of `v` are overwritten byte for byte (safetensors stores
            // little-endian data, this target is little-endian); the byte view covers exactly `v`.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v.as_slice()))
            };
            read(bytes)?;
            Tensor::from_vec(v, shape, device)
        }
        match e.dtype {
            DType::F32 => typed::<f32>(n, shape, device, read),
            DType::BF16 => typed::<bf16>(n, shape, device, read),
            DType::F16 => typed::<f16>(n, shape, device, read),
            DType::F64 => typed::<f64>(n, shape, device, read),
            DType::U32 => typed::<u32>(n, shape, device, read),
            DType::I64 => typed::<i64>(n, shape, device, read),
            DType::U8 => typed::<u8>(n, shape, device, read),
            d => candle_core::bail!("{}: tensor `{name}` has unsupported dtype {d:?}", path.display()),
        }
    }

    /// Names of all tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    /// The file holding `name`, if any.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.tensors.get(name).map(|e| self.files[e.file].0.as_path())
    }
}

impl SimpleBackend for SafetensorsReader {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        // Shape first, so that a wrong tensor is reported without reading it.
        if let Some(e) = self.tensors.get(name) {
            if e.shape.as_slice() != s.dims() {
                return Err(candle_core::Error::UnexpectedShape {
                    msg: format!("shape mismatch for {name}"),
                    expected: s,
                    got: Shape::from(e.shape.clone()),
                }
                .bt());
            }
        }
        self.get_unchecked(name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
