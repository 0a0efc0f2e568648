//! `sampling.wgsl`: the draw of each row (`main`) and the select stage of a step (`reveal`).
//!
//! The per-step dispatch chain of a block is: forward, LM head, sample, reveal. The reveal
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

const SAMPLE_LAYOUT: Layout = &[
    (0, Slot::Uniform),
    (1, Slot::StepTable),
    (2, Slot::Read),
    (3, Slot::ReadWrite),
    (4, Slot::ReadWrite),
];

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

/// The sampling kernel (one workgroup per drawn row; the mode is in the step's slot).
pub fn sample_key() -> PipelineKey {
    PipelineKey {
        shader: "sampling.wgsl",
        entry: "main",
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
            shader: "sampling.wgsl",
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
    /// The indirect dispatch arguments a parallel reveal stage empties.
    pub next_args: &'a wgpu::Buffer,
}

/// The sampling dispatch (`rows` workgroups by default).
pub async fn sample_dispatch(ctx: &GpuContext, io: &SampleIo<'_>, rows: u32) -> Result<Dispatch> {
    let sp = uniform(ctx, "sample params", &io.params);
    let sample_buffers = [
        Bound::Buffer(&sp),
        Bound::Steps(io.steps),
        Bound::Buffer(io.logits),
        Bound::Buffer(io.tokens),
        Bound::Buffer(io.draws),
    ];
    let (compiled, bind_group) = compile_and_bind(ctx, &sample_key(), &sample_buffers).await?;
    Ok(Dispatch {
        kernel: "sample",
        layer: None,
        compiled,
        bind_group,
        grid: Grid::Fixed(rows, 1),
        cost: Cost {
            // SUBS log-softmax, nucleus and entropy passes over the vocabulary, per row.
            flops: 50 * rows as u64 * io.params.vocab as u64,
            logit_bytes: rows as u64 * io.params.vocab as u64 * 4,
            ..Cost::default()
        },
    })
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
