//! Resident memory of this process: the high-water mark the benchmarks report, and handing freed heap
//! memory back to the operating system.
//!
//! Linux only (`/proc/self/status`, `/proc/self/clear_refs`, glibc's `malloc_trim`, `madvise`); elsewhere
//! the functions report nothing and do nothing.
use candle_core::{DType, Tensor};

/// Resident-set high-water mark of this process (`VmHWM` in `/proc/self/status`), bytes; `None` where
/// unavailable.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Current resident set (`VmRSS`), bytes; `None` where unavailable.
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the high-water mark to the current resident set (`echo 5 > /proc/self/clear_refs`); false
/// where that is not possible (then [`peak_rss_bytes`] covers the process's whole life).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Returns free heap memory to the operating system (glibc `malloc_trim(0)`).
///
/// glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in its arenas, so after
/// weights are converted (f32 → bf16) or temporaries of their initialisation are dropped, the freed
/// bytes still count as resident until trimmed. Call after such a step; it does not touch live data.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `t` converted to `dtype`, contiguous, in a freshly allocated buffer advised for transparent huge
/// pages (`madvise(MADV_HUGEPAGE)`: 2 MiB pages where the kernel's THP mode is `madvise` or `always`).
///
/// For weight matrices that are streamed from memory on every decoded token: with 4 KiB pages each
/// 4 KiB of a stream costs a TLB miss (on a virtual machine, a two-dimensional page walk). Measured on
/// this machine for the bf16 mat-vec over 400 MB, 2 threads: 18–23 GB/s → 23–28 GB/s. The advice is
/// best effort: where it is unavailable (non-Linux, THP `never`, non-CPU tensors, other dtypes) this is
/// `t.to_dtype(dtype)` made contiguous. Memory: the source stays alive until the caller drops it.
/// Errors: candle's conversion errors.
pub fn to_dtype_huge_pages(t: &Tensor, dtype: DType) -> crate::Result<Tensor> {
    if !t.device().is_cpu() {
        return Ok(t.to_dtype(dtype)?.contiguous()?);
    }
    match dtype {
        DType::BF16 => huge::<half::bf16>(t, dtype),
        DType::F16 => huge::<half::f16>(t, dtype),
        DType::F32 => huge::<f32>(t, dtype),
        _ => Ok(t.to_dtype(dtype)?.contiguous()?),
    }
}

fn huge<T: candle_core::WithDType>(t: &Tensor, dtype: DType) -> crate::Result<Tensor> {
    let src: Vec<T> = t.to_dtype(dtype)?.flatten_all()?.to_vec1()?;
    let mut buf: Vec<T> = Vec::with_capacity(src.len());
    advise_huge_pages(buf.as_mut_ptr() as usize, src.len() * std::mem::size_of::<T>());
    buf.extend_from_slice(&src);
    drop(src);
    Ok(Tensor::from_vec(buf, t.shape(), t.device())?)
}

/// `madvise(MADV_HUGEPAGE)` on the whole pages inside `[addr, addr + len)`; ignored where unsupported.
fn advise_huge_pages(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = addr.div_ceil(PAGE) * PAGE;
        let end = (addr + len) / PAGE * PAGE;
        if end > start {
            // SAFETY: advice only, on pages of an allocation this process owns; a failure changes nothing.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}
