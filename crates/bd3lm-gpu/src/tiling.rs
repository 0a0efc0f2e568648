//! How the kernels split their work over workgroups. Two tilings share every kernel and differ
//! only in compile-time constants and grid sizes:
//!
//! * **hardware** (GPUs): narrow column tiles and K splits for the projections, the KV cache
//!   split over workgroups for attention (flash-decoding), so that at the released shapes
//!   (16-token blocks, a full 1,024-token window) every dispatch that streams a weight matrix
//!   or the cache launches at least [`MIN_WORKGROUPS`] workgroups;
//! * **software** (CPU adapters: lavapipe, SwiftShader): one thread per output column and one
//!   split of the cache, because every barrier of a workgroup costs such an adapter a context
//!   switch per SIMD group, so fewer and wider workgroups win there.
//!
//! `auto` picks by adapter. Either tiling runs on any adapter (the tests run both).

use crate::error::{GpuError, Result};

/// Workgroups every dispatch that streams weights or the KV cache launches at released
/// shapes under the hardware tiling: two per compute unit of a 132-unit GPU (H100 SXM).
pub const MIN_WORKGROUPS: u32 = 264;

/// Threads per workgroup of every matmul, attention and norm kernel.
pub const WORKGROUP_SIZE: u32 = 256;

/// The tiling the user asks for (`--gpu-tiling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Tiling {
    /// Hardware on a GPU, software on a CPU adapter.
    #[default]
    Auto,
    Hardware,
    Software,
}

impl Tiling {
    pub const ALL: [Tiling; 3] = [Tiling::Auto, Tiling::Hardware, Tiling::Software];

    pub fn name(self) -> &'static str {
        match self {
            Tiling::Auto => "auto",
            Tiling::Hardware => "hardware",
            Tiling::Software => "software",
        }
    }

    /// Parses `auto`, `hardware` or `software`; anything else is an error.
    pub fn parse(s: &str) -> Result<Tiling> {
        Tiling::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                GpuError::Unsupported(format!(
                    "unknown GPU tiling `{s}` (expected auto, hardware or software)"
                ))
            })
    }

    /// The tiling the kernels use on an adapter: `Auto` resolved.
    pub fn resolve(self, software_adapter: bool) -> Tiling {
        match self {
            Tiling::Auto if software_adapter => Tiling::Software,
            Tiling::Auto => Tiling::Hardware,
            t => t,
        }
    }
}

impl std::fmt::Display for Tiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Work split of one matmul: `cols` output columns per workgroup (with `256 / cols` threads
/// per column along K) and `splits` K splits of `k_slice` inputs each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulTiles {
    pub cols: u32,
    pub splits: u32,
    pub k_slice: u32,
}

impl MatmulTiles {
    /// Threads per output column.
    pub fn lanes(&self) -> u32 {
        WORKGROUP_SIZE / self.cols
    }

    /// The grid for `n` output columns: (column tiles, K splits).
    pub fn grid(&self, n: usize) -> (u32, u32) {
        ((n as u32).div_ceil(self.cols), self.splits)
    }
}

/// Tiles for an `[n, k]` matrix. `splittable`: the epilogue takes partial sums (the residual
/// projections), so K may be split; the others (QKV scatter, GELU, LM head) keep whole sums.
pub fn matmul_tiles(tiling: Tiling, n: usize, k: usize, splittable: bool) -> MatmulTiles {
    let whole = |cols: u32| MatmulTiles {
        cols,
        splits: 1,
        k_slice: k as u32,
    };
    if tiling != Tiling::Hardware {
        return whole(WORKGROUP_SIZE);
    }
    let n = n as u32;
    // The widest column tile that still fills the GPU; 8 columns (32 lanes) at the narrowest.
    if let Some(cols) = [32u32, 16, 8]
        .into_iter()
        .find(|&c| n.div_ceil(c) >= MIN_WORKGROUPS)
    {
        return whole(cols);
    }
    let cols = 8;
    let tiles = n.div_ceil(cols);
    if !splittable {
        return whole(cols);
    }
    // Enough K splits to reach the bound, each giving every lane at least one 8-wide chunk.
    let chunks = (k / 8) as u32;
    let lanes = WORKGROUP_SIZE / cols;
    let max_splits = (chunks / lanes).max(1);
    let splits = MIN_WORKGROUPS.div_ceil(tiles).clamp(1, max_splits);
    let slice_chunks = chunks.div_ceil(splits);
    MatmulTiles {
        cols,
        splits: chunks.div_ceil(slice_chunks),
        k_slice: slice_chunks * 8,
    }
}

/// Work split of attention: tiles of `kt` keys in workgroup memory; a window of `keys` keys
/// is split into at most `max_splits` splits of at least `min_keys` keys each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionTiles {
    pub kt: u32,
    pub max_splits: u32,
    pub min_keys: u32,
}

impl AttentionTiles {
    /// Keys per split of a window of `keys` keys (`Step.kv_split`).
    pub fn keys_per_split(&self, keys: usize) -> u32 {
        (keys as u32).div_ceil(self.max_splits).max(self.min_keys)
    }

    /// Splits of a window of `keys` keys (at most `max_splits`).
    pub fn splits(&self, keys: usize) -> u32 {
        (keys as u32).div_ceil(self.keys_per_split(keys))
    }
}

/// Keys per attention tile so the kernel's workgroup memory stays within 16 KiB.
pub fn attention_tile(block: usize, head_dim: usize) -> u32 {
    let mut kt = 64;
    while kt > 4 && block * head_dim + kt * head_dim + block * kt + 3 * block > 4000 {
        kt /= 2;
    }
    kt as u32
}

/// Keys per split at the least, under the hardware tiling: below it a split's fixed costs (its
/// queries' rotation, the combine) outweigh its keys.
const MIN_KEYS_PER_SPLIT: u32 = 16;

pub fn attention_tiles(
    tiling: Tiling,
    block: usize,
    head_dim: usize,
    heads: usize,
) -> AttentionTiles {
    let kt = attention_tile(block, head_dim);
    if tiling == Tiling::Hardware {
        // Windows of at least MIN_KEYS_PER_SPLIT x splits keys give heads x splits >=
        // MIN_WORKGROUPS: from a fill of 336 keys on at the released shapes.
        AttentionTiles {
            kt,
            max_splits: MIN_WORKGROUPS.div_ceil(heads as u32),
            min_keys: MIN_KEYS_PER_SPLIT,
        }
    } else {
        AttentionTiles {
            kt,
            max_splits: 1,
            min_keys: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_shapes_fill_the_gpu() {
        let (b, h, v, n, heads) = (16, 768, 50258, 1024, 12);
        for (rows, cols, split) in [
            (3 * h, h, false),
            (h, h, true),
            (4 * h, h, false),
            (h, 4 * h, true),
            (v, h, false),
        ] {
            let t = matmul_tiles(Tiling::Hardware, rows, cols, split);
            let (x, y) = t.grid(rows);
            assert!(x * y >= MIN_WORKGROUPS, "[{rows}, {cols}]: {t:?}");
            assert_eq!(t.k_slice % 8, 0);
            assert!(t.k_slice as usize * (t.splits as usize - 1) < cols);
        }
        let a = attention_tiles(Tiling::Hardware, b, h / heads, heads);
        for fill in [512, 1008] {
            assert!(
                a.splits(fill + b) * heads as u32 >= MIN_WORKGROUPS,
                "{fill}: {a:?}"
            );
        }
        for keys in 1..=n {
            let (kps, splits) = (a.keys_per_split(keys), a.splits(keys));
            assert!(
                splits <= a.max_splits && (splits - 1) * kps < keys as u32,
                "{keys}"
            );
        }
        let s = attention_tiles(Tiling::Software, b, h / heads, heads);
        assert_eq!((s.splits(n), s.keys_per_split(n)), (1, n as u32));
    }

    #[test]
    fn tiling_names_parse_and_unknown_ones_fail() {
        for t in Tiling::ALL {
            assert_eq!(Tiling::parse(t.name()).unwrap(), t);
        }
        assert!(Tiling::parse("gpu").is_err());
        assert_eq!(Tiling::Auto.resolve(true), Tiling::Software);
        assert_eq!(Tiling::Auto.resolve(false), Tiling::Hardware);
        assert_eq!(Tiling::Software.resolve(false), Tiling::Software);
    }
}
