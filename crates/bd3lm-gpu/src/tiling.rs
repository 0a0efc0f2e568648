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

/// Workgroups every dispatch that streams weights or the KV cache aims for at released
/// shapes under the hardware tiling: two per compute unit of a 132-unit GPU (H100 SXM).
pub const MIN_WORKGROUPS: u32 = 264;

/// Compute units of the GPU the hardware tiling is sized for (H100 SXM): the least number
/// of workgroups a dispatch that reads 128 KiB or more launches (`workgroups_min`).
pub const GPU_UNITS: u32 = 132;

/// Threads per workgroup of every attention and norm kernel, and the most of a matmul.
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

/// Work split of one matmul: `cols` output columns per workgroup of `wg` threads and `splits`
/// K splits of `k_slice` inputs each. `staged`: the GPU path of `matmul.wgsl` (rows staged in
/// workgroup memory, 4 columns and `rpt` rows per thread, `rsplit` row groups, `lanes`
/// threads per column group along K, wide weight words); otherwise each column's
/// `wg / cols` lanes read rows from global memory (CPU adapters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulTiles {
    pub cols: u32,
    pub splits: u32,
    pub k_slice: u32,
    pub wg: u32,
    pub lanes: u32,
    pub rpt: u32,
    pub rsplit: u32,
    pub staged: bool,
}

impl MatmulTiles {
    /// The grid for `n` output columns: (column tiles, K splits).
    pub fn grid(&self, n: usize) -> (u32, u32) {
        ((n as u32).div_ceil(self.cols), self.splits)
    }

    /// K values one staged pass covers (`lanes` wide steps of `kstep` values).
    pub fn chunk(&self, kstep: u32) -> u32 {
        self.lanes * kstep
    }

    /// Rows the staged path keeps in workgroup memory (`rsplit * rpt`, at least the call's).
    pub fn staged_rows(&self) -> u32 {
        self.rsplit * self.rpt
    }
}

/// Bytes of workgroup memory every adapter offers (WebGPU's default limit).
pub const WORKGROUP_BYTES: u32 = 16384;

/// Rows per thread of the staged matmul at most: 8 vec4 sums (32 registers).
const ROWS_PER_THREAD: u32 = 8;

/// Tiles for an `[n, k]` matrix read in wide steps of `kstep` values, for calls of at most
/// `rows` rows. `splittable`: the epilogue takes partial sums (the residual projections), so K
/// may be split; the others (QKV scatter, GELU, LM head) keep whole sums.
pub fn matmul_tiles(
    tiling: Tiling,
    n: usize,
    k: usize,
    splittable: bool,
    rows: usize,
    kstep: u32,
) -> MatmulTiles {
    if tiling != Tiling::Hardware || !k.is_multiple_of(kstep as usize) || rows == 0 {
        return MatmulTiles {
            cols: WORKGROUP_SIZE,
            splits: 1,
            k_slice: k as u32,
            wg: WORKGROUP_SIZE,
            lanes: 1,
            rpt: 1,
            rsplit: 1,
            staged: false,
        };
    }
    let (n, k, rows) = (n as u32, k as u32, rows as u32);
    let rpt = rows.min(ROWS_PER_THREAD);
    let rsplit = rows.div_ceil(rpt);
    // Lanes along K: as many wide steps as the staged chunk of every row fits in workgroup
    // memory, and no more than K has.
    let chunk_max = WORKGROUP_BYTES / 4 / (rpt * rsplit);
    let steps = k / kstep;
    let mut lanes = 1;
    while lanes * 2 * kstep <= chunk_max
        && lanes * 2 <= steps
        && lanes * 2 * rsplit <= WORKGROUP_SIZE
    {
        lanes *= 2;
    }
    // Column groups of 4 columns, most first: workgroups of up to 256 threads down to
    // the smallest one (one column group).
    let max_groups = WORKGROUP_SIZE / (lanes * rsplit);
    let candidates: Vec<MatmulTiles> = (0..=8)
        .rev()
        .map(|p| 1u32 << p)
        .filter(|&cg| cg <= max_groups)
        .map(|cg| MatmulTiles {
            cols: 4 * cg,
            splits: 1,
            k_slice: k,
            wg: cg * lanes * rsplit,
            lanes,
            rpt,
            rsplit,
            staged: true,
        })
        .collect();
    let fills = |t: &&MatmulTiles, bound: u32| n.div_ceil(t.cols) >= bound;
    let full = candidates.iter().filter(|t| t.wg >= 32);
    if let Some(t) = full.clone().find(|t| fills(t, MIN_WORKGROUPS)) {
        return *t;
    }
    // The smallest workgroup of at least 64 threads (two warps) to split along K.
    let base = *candidates
        .iter()
        .rev()
        .find(|t| t.wg >= 64)
        .unwrap_or(&candidates[0]);
    if !splittable {
        return full
            .clone()
            .find(|t| fills(t, GPU_UNITS))
            .or(candidates.iter().find(|t| fills(t, GPU_UNITS)))
            .copied()
            .unwrap_or(*candidates.last().unwrap_or(&base));
    }
    // Enough K splits to reach the bound, each a whole number of staged chunks.
    let chunk = base.chunk(kstep);
    let chunks = k.div_ceil(chunk);
    let tiles = n.div_ceil(base.cols);
    let splits = MIN_WORKGROUPS.div_ceil(tiles).clamp(1, chunks);
    let slice_chunks = chunks.div_ceil(splits);
    MatmulTiles {
        splits: chunks.div_ceil(slice_chunks),
        k_slice: slice_chunks * chunk,
        ..base
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

/// Keys per attention tile so the kernel's workgroup memory stays within `workgroup_bytes`
/// (less 384 bytes of margin): queries and keys with padded rows, V, the scores, three floats
/// per row and the softmax's 256 lanes. Longer tiles mean fewer of the tile loop's barriers.
pub fn attention_tile(block: usize, head_dim: usize, workgroup_bytes: u32) -> u32 {
    let floats =
        |kt: usize| block * (head_dim + 1) + kt * (2 * head_dim + 1) + block * kt + 3 * block + 256;
    let budget = (workgroup_bytes as usize / 4).saturating_sub(96);
    let mut kt = 64;
    while kt > 4 && floats(kt) > budget {
        kt /= 2;
    }
    kt as u32
}

/// Threads per row of the attention softmax: the largest power of two with one group of
/// them per row of a block in a 256-thread workgroup.
pub fn softmax_lanes(block: usize) -> u32 {
    let mut lanes = 1;
    while lanes * 2 * block <= WORKGROUP_SIZE as usize {
        lanes *= 2;
    }
    lanes as u32
}

/// Keys per split at the least, under the hardware tiling: below it a split's fixed costs (its
/// queries' rotation, the combine) outweigh its keys.
const MIN_KEYS_PER_SPLIT: u32 = 16;

pub fn attention_tiles(
    tiling: Tiling,
    block: usize,
    head_dim: usize,
    heads: usize,
    workgroup_bytes: u32,
) -> AttentionTiles {
    let kt = attention_tile(block, head_dim, workgroup_bytes);
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
        for kstep in [8, 16, 32] {
            for (rows, cols, split, call_rows) in [
                (3 * h, h, false, 2 * b),
                (h, h, true, 2 * b),
                (4 * h, h, false, 2 * b),
                (h, 4 * h, true, 2 * b),
                (v, h, false, b),
                (v, h, false, 1),
            ] {
                let t = matmul_tiles(Tiling::Hardware, rows, cols, split, call_rows, kstep);
                let (x, y) = t.grid(rows);
                assert!(t.staged && x * y >= GPU_UNITS, "[{rows}, {cols}]: {t:?}");
                assert!(
                    t.splits == 1 || t.k_slice.is_multiple_of(t.chunk(kstep)),
                    "{t:?}"
                );
                assert!(t.k_slice as usize * (t.splits as usize - 1) < cols);
                // The staged chunk of every row fits the default workgroup memory, and so
                // does one vec4 per thread for the lanes' sums.
                assert!(
                    t.staged_rows() * t.chunk(kstep) * 4 <= WORKGROUP_BYTES,
                    "{t:?}"
                );
                assert!(t.staged_rows() >= call_rows as u32 && t.rpt <= ROWS_PER_THREAD);
                assert!(t.wg * 16 <= WORKGROUP_BYTES && t.cols == 4 * t.wg / (t.lanes * t.rsplit));
            }
        }
        let soft = matmul_tiles(Tiling::Software, v, h, false, b, 16);
        assert!(!soft.staged && soft.cols == WORKGROUP_SIZE);
        let a = attention_tiles(Tiling::Hardware, b, h / heads, heads, WORKGROUP_BYTES);
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
        let s = attention_tiles(Tiling::Software, b, h / heads, heads, WORKGROUP_BYTES);
        assert_eq!((s.splits(n), s.keys_per_split(n)), (1, n as u32));
    }

    /// The attention tile within the device's workgroup memory: 16 keys at WebGPU's default
    /// for the released shapes (and a folded call's 32 rows), 32 with 32 KiB.
    #[test]
    fn attention_tiles_fit_the_workgroup_memory() {
        let bytes = |block: usize, d: usize, kt: usize| {
            4 * (block * (d + 1) + kt * (2 * d + 1) + block * kt + 3 * block + 256)
        };
        for (wg_bytes, want) in [(WORKGROUP_BYTES, 16), (2 * WORKGROUP_BYTES, 32)] {
            assert_eq!(attention_tile(16, 64, wg_bytes), want);
            for block in 1..=16 {
                for d in [8, 16, 64, 128] {
                    let kt = attention_tile(block, d, wg_bytes) as usize;
                    assert!(kt == 4 || bytes(block, d, kt) <= wg_bytes as usize - 384);
                    assert!(kt == 64 || bytes(block, d, 2 * kt) > wg_bytes as usize - 384);
                }
            }
        }
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
