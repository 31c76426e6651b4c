//! [`QuantPath`]: which dot-product kernel a quantised product runs, detected at run time.
use std::sync::OnceLock;

/// The kernel of a quantised product (activations quantised to Q8_0, weights Q8_0 or Q4_0). Every
/// path gives the same per-block integer sums; they differ only in the order of the f32 accumulation.
/// Every path runs on either [`QuantLayout`](crate::QuantLayout): the AVX2 and scalar kernels read an
/// interleaved matrix a group at a time unpacked into GGML blocks (slower; for tests and A/B runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantPath {
    /// AVX-512 VNNI (`vpdpbusd`, 512-bit), weights as unsigned bytes (Q8_0: value + 128, Q4_0: the raw
    /// nibble) against signed activations, the offset removed through a per-block correction (−128·Σa
    /// or −8·Σa) preloaded into the accumulator. On [`QuantLayout::Interleaved16`](crate::QuantLayout)
    /// (the layout matrices get on such CPUs) 16 weight rows at once, one per i32 lane, each
    /// instruction taking 4 weights of each row and one broadcast group of 4 activations; on
    /// [`QuantLayout::Rows`](crate::QuantLayout) two blocks of one row per instruction. Needs
    /// AVX512F/BW/VL, AVX512-VNNI and AVX512-VBMI (Intel Ice Lake and later, AMD Zen 4 and later).
    Avx512Vnni,
    /// AVX2 (`vpmaddubsw` + `vpmaddwd`, 256-bit): one block per step, as GGML's AVX2 `vec_dot`; Q4_0
    /// nibbles multiplied unsigned with the offset removed by a per-activation-block correction, and
    /// the f16 weight scales of eight blocks widened together.
    Avx2,
    /// Portable scalar loop: integer sum per block, then `sumf += sumi·(d_w·d_x)` (GGML's generic
    /// `ggml_vec_dot_q8_0_q8_0`).
    Scalar,
}

impl QuantPath {
    /// Every path, fastest first.
    pub const ALL: [QuantPath; 3] = [QuantPath::Avx512Vnni, QuantPath::Avx2, QuantPath::Scalar];

    /// Whether this CPU runs the path (`is_x86_feature_detected!`; the scalar path always).
    pub fn available(self) -> bool {
        match self {
            QuantPath::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            QuantPath::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            QuantPath::Avx512Vnni => {
                QuantPath::Avx2.available()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512vbmi")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The paths this CPU runs, fastest first (the scalar path last, always present).
    pub fn available_paths() -> Vec<QuantPath> {
        Self::ALL.into_iter().filter(|p| p.available()).collect()
    }

    /// The fastest path this CPU runs (detected once per process).
    pub fn best() -> QuantPath {
        static BEST: OnceLock<QuantPath> = OnceLock::new();
        *BEST.get_or_init(|| Self::available_paths()[0])
    }

    /// Short name (`avx512-vnni`, `avx2`, `scalar`).
    pub fn name(self) -> &'static str {
        match self {
            QuantPath::Avx512Vnni => "avx512-vnni",
            QuantPath::Avx2 => "avx2",
            QuantPath::Scalar => "scalar",
        }
    }
}

impl std::fmt::Display for QuantPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
