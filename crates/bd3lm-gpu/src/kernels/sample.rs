//! `sampling.wgsl`: the draw of each row (six passes over tiles of the logits) and
//! `reveal.wgsl`: the select stage of a step.
//!
//! The per-step dispatch chain of a block is: forward, LM head, the sampler's passes
//! ([`SAMPLE_PASSES`]), reveal. Every pass but the last runs one workgroup per (tile, row),
//! with tiles sized by [`sample_tiles`] so that even one row fills a large GPU. The reveal
//! kernel is the swappable part: it reads the step's draws and decides which rows the step
//! reveals. [`RevealRule::Scheduled`] reveals the row the host chose in advance (first
//! hitting); [`RevealRule::Confidence`] and [`RevealRule::Entropy`] choose on the device from
//! the draws (several rows per step, exactly as the core's selection functions do), write the
//! same reveal log and, once the block is complete, empty the indirect dispatch arguments of
//! the block's later steps.

use super::{compile_and_bind, Layout};
use crate::context::GpuContext;
use crate::dispatch::{uniform, Bound, Cost, Dispatch, Grid, SampleParams, StepTable};
use crate::error::Result;
use crate::pipelines::{PipelineKey, Slot};
use crate::shaders::Variant;
use crate::tiling::Tiling;

const SAMPLE_LAYOUT: Layout = &[
    (0, Slot::Uniform),
    (1, Slot::StepTable),
    (2, Slot::Read),
    (3, Slot::Read),
    (4, Slot::ReadWrite),
    (7, Slot::ReadWrite),
    (8, Slot::ReadWrite),
];

/// The sampler's passes in recording order: (entry point, kernel name for profiles). All but
/// `finish` run (tiles, rows) workgroups; `finish` runs one per row.
pub const SAMPLE_PASSES: [(&str, &str); 6] = [
    ("stats", "sample_stats"),
    ("hist1", "sample_hist1"),
    ("hist2", "sample_hist2"),
    ("hist3", "sample_hist3"),
    ("draw", "sample_draw"),
    ("finish", "sample_finish"),
];

/// Workgroups the sampler aims for per pass over the logits: two per compute unit of a
/// 132-unit GPU (an H100), whatever the number of rows.
const TARGET_WORKGROUPS: usize = 264;
/// Threads of a sampling workgroup: tiles are multiples of it.
const SAMPLE_WG: usize = 256;
/// Words per (row, tile) of partial results and per search slot (sampling.wgsl).
const PART_WORDS: usize = 8;
const SEARCH_SLOTS: usize = 4;
/// Words of one row's three histogram levels of 1024 (lo, hi) masses.
const HIST_ROW_WORDS: usize = 3 * 2048;

/// (tiles per row, logits per tile) for `rows` rows of `vocab` logits: about
/// [`TARGET_WORKGROUPS`] workgroups in all, each tile a multiple of the workgroup size.
pub fn sample_tiles(vocab: usize, rows: usize) -> (u32, u32) {
    let per_row = TARGET_WORKGROUPS.div_ceil(rows.max(1));
    let tile_len = vocab.div_ceil(per_row).div_ceil(SAMPLE_WG).max(1) * SAMPLE_WG;
    (vocab.div_ceil(tile_len).max(1) as u32, tile_len as u32)
}

/// Words of the sampler's partial results for a block of `block` rows (any number of rows
/// drawn at once; one row has the most tiles).
pub fn parts_words(block: usize, vocab: usize) -> usize {
    let (tiles, _) = sample_tiles(vocab, 1);
    block * (tiles as usize * PART_WORDS + SEARCH_SLOTS * PART_WORDS)
}

/// Words of the sampler's histograms for a block of `block` rows.
pub fn hist_words(block: usize) -> usize {
    block * HIST_ROW_WORDS
}

const REVEAL_LAYOUT: Layout = &[
    (0, Slot::Uniform),
    (1, Slot::StepTable),
    (3, Slot::ReadWrite),
    (4, Slot::ReadWrite),
    (5, Slot::ReadWrite),
];

/// The parallel stages also empty the later steps' indirect dispatch arguments.
const PARALLEL_REVEAL_LAYOUT: Layout = &[
    (0, Slot::Uniform),
    (1, Slot::StepTable),
    (3, Slot::ReadWrite),
    (4, Slot::ReadWrite),
    (5, Slot::ReadWrite),
    (6, Slot::ReadWrite),
];

/// One pass of the sampler (an entry of [`SAMPLE_PASSES`]; the mode is in the step's slot).
pub fn sample_key(entry: &'static str) -> PipelineKey {
    PipelineKey {
        shader: "sampling.wgsl",
        entry,
        variant: Variant::default(),
        slots: SAMPLE_LAYOUT.to_vec(),
    }
}

/// How a step of a block chooses the rows it reveals (the select stage); the bound of a
/// parallel rule is in the step's slot (`Step.bound`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevealRule {
    /// The row the host scheduled for the step (`Step.reveal_row`): first hitting.
    Scheduled,
    /// Every masked row whose drawn token has probability `>= Step.bound`, at least the most
    /// confident one (`bd3lm::sampler::select_confident`).
    Confidence,
    /// The longest prefix by entropy within `Step.bound` (`bd3lm::sampler::select_low_entropy`).
    Entropy,
}

impl RevealRule {
    pub const ALL: [RevealRule; 3] = [
        RevealRule::Scheduled,
        RevealRule::Confidence,
        RevealRule::Entropy,
    ];

    fn flag(self) -> &'static str {
        match self {
            RevealRule::Scheduled => "REVEAL_SCHEDULED",
            RevealRule::Confidence => "REVEAL_CONFIDENCE",
            RevealRule::Entropy => "REVEAL_ENTROPY",
        }
    }

    /// Whether the stage selects on the draws (and empties the later steps' dispatches).
    pub fn parallel(self) -> bool {
        self != RevealRule::Scheduled
    }

    pub fn key(self) -> PipelineKey {
        PipelineKey {
            shader: "reveal.wgsl",
            entry: "reveal",
            variant: Variant::default().flag(self.flag()),
            slots: if self.parallel() {
                PARALLEL_REVEAL_LAYOUT.to_vec()
            } else {
                REVEAL_LAYOUT.to_vec()
            },
        }
    }
}

/// Words of the reveal log of a block of `block` rows: a count, then (step, row, id,
/// confidence bits) per reveal; every row is revealed at most once per block.
pub fn reveal_log_words(block: usize) -> usize {
    1 + 4 * block
}

/// Words of the draws table of a block of `block` rows: (id, value bits) per step and row,
/// then one entropy per step and row (from [`entropy_offset`]).
pub fn draws_words(block: usize) -> usize {
    3 * block * block
}

/// Word offset of the entropies in the draws table.
pub fn entropy_offset(block: usize) -> usize {
    2 * block * block
}

/// Buffers of the sampling kernel and the reveal stage.
pub struct SampleIo<'a> {
    pub params: SampleParams,
    pub steps: &'a StepTable,
    /// `[rows, V]` logits (or probabilities / log-probs for the probes).
    pub logits: &'a wgpu::Buffer,
    /// The device-side block.
    pub tokens: &'a wgpu::Buffer,
    /// `[step, block row] -> (id, value bits)`, then the entropies ([`draws_words`]).
    pub draws: &'a wgpu::Buffer,
    pub reveal_log: &'a wgpu::Buffer,
    /// The sampler's per-tile partials and search state ([`parts_words`]).
    pub parts: &'a wgpu::Buffer,
    /// The sampler's histograms ([`hist_words`]).
    pub hist: &'a wgpu::Buffer,
    /// The indirect dispatch arguments a parallel reveal stage empties.
    pub next_args: &'a wgpu::Buffer,
}

/// The sampler's dispatches ([`SAMPLE_PASSES`]) for `rows` rows (the grid's y; the probes
/// record them for fewer). The tiles are sized for `rows`.
pub async fn sample_dispatches(
    ctx: &GpuContext,
    io: &SampleIo<'_>,
    rows: u32,
) -> Result<Vec<Dispatch>> {
    let vocab = io.params.vocab as usize;
    // CPU adapters (the software tiling) run one workgroup per row, as they run one split of
    // the cache: every workgroup's barriers cost them a context switch per SIMD group.
    let (tiles, tile_len) = if ctx.tiling == Tiling::Software {
        (1, (vocab.div_ceil(SAMPLE_WG) * SAMPLE_WG) as u32)
    } else {
        sample_tiles(vocab, rows as usize)
    };
    let params = SampleParams {
        tiles,
        tile_len,
        ..io.params
    };
    let sp = uniform(ctx, "sample params", &params);
    let buffers = [
        Bound::Buffer(&sp),
        Bound::Steps(io.steps),
        Bound::Buffer(io.logits),
        Bound::Buffer(io.tokens),
        Bound::Buffer(io.draws),
        Bound::Buffer(io.parts),
        Bound::Buffer(io.hist),
    ];
    let mut out = Vec::with_capacity(SAMPLE_PASSES.len());
    for (entry, kernel) in SAMPLE_PASSES {
        let (compiled, bind_group) = compile_and_bind(ctx, &sample_key(entry), &buffers).await?;
        let finish = entry == "finish";
        out.push(Dispatch {
            kernel,
            layer: None,
            compiled,
            bind_group,
            grid: Grid::Fixed(if finish { 1 } else { tiles }, rows),
            cost: Cost {
                // exp (and, in the draw pass, SplitMix64) per logit; the finish combines.
                flops: if finish {
                    0
                } else {
                    10 * rows as u64 * vocab as u64
                },
                // Every pass but the finish reads the logits (the finish reads the tiles'
                // partials): a pass over 128 KiB or more counts in `workgroups_min`.
                logit_bytes: if finish {
                    0
                } else {
                    rows as u64 * vocab as u64 * 4
                },
                ..Cost::default()
            },
        });
    }
    Ok(out)
}

/// The reveal dispatch for `rule`.
pub async fn reveal_dispatch(
    ctx: &GpuContext,
    io: &SampleIo<'_>,
    rule: RevealRule,
) -> Result<Dispatch> {
    let sp = uniform(ctx, "sample params", &io.params);
    let mut reveal_buffers = vec![
        Bound::Buffer(&sp),
        Bound::Steps(io.steps),
        Bound::Buffer(io.tokens),
        Bound::Buffer(io.draws),
        Bound::Buffer(io.reveal_log),
    ];
    if rule.parallel() {
        reveal_buffers.push(Bound::Buffer(io.next_args));
    }
    let (compiled, bind_group) = compile_and_bind(ctx, &rule.key(), &reveal_buffers).await?;
    Ok(Dispatch {
        kernel: "reveal",
        layer: None,
        compiled,
        bind_group,
        grid: Grid::Fixed(1, 1),
        cost: Cost::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pass over the logits of a full-size vocabulary fills a 132-unit GPU, for one row
    /// (first hitting) as for a whole block; the tiles cover the row exactly once.
    #[test]
    fn tiles_fill_a_large_gpu_and_cover_the_row() {
        for (vocab, rows) in [
            (50258, 1),
            (50258, 4),
            (50258, 16),
            (512, 16),
            (3000, 4),
            (1, 1),
        ] {
            let (tiles, tile_len) = sample_tiles(vocab, rows);
            let (tiles, tile_len) = (tiles as usize, tile_len as usize);
            assert_eq!(tile_len % SAMPLE_WG, 0);
            assert!(tiles * tile_len >= vocab && (tiles - 1) * tile_len < vocab.max(1));
            if vocab * rows * 4 >= crate::dispatch::BOUNDED_READ_BYTES as usize {
                assert!(tiles * rows >= 132, "{vocab} x {rows}: {tiles} tiles");
            }
            assert!(
                tiles <= sample_tiles(vocab, 1).0 as usize,
                "parts_words covers it"
            );
        }
    }
}
