//! `sampling.wgsl`: the draw of each row (`main`) and the select stage of a step (`reveal`).
//!
//! The per-step dispatch chain of a block is: forward, LM head, sample, reveal. The reveal
//! kernel is the swappable part: it reads the step's draws and decides which rows the step
//! reveals. [`RevealRule::Scheduled`] reveals the row the host chose in advance (first
//! hitting); rules that choose on the device from the draws (a confidence threshold, an
//! entropy bound: several rows per step) are further variants of the same entry point, with
//! the same reveal log.

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

/// The sampling kernel (one workgroup per drawn row; the mode is in the step's slot).
pub fn sample_key() -> PipelineKey {
    PipelineKey {
        shader: "sampling.wgsl",
        entry: "main",
        variant: Variant::default(),
        slots: SAMPLE_LAYOUT.to_vec(),
    }
}

/// How a step of a block chooses the rows it reveals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevealRule {
    /// The row the host scheduled for the step (`Step.reveal_row`): first hitting.
    Scheduled,
}

impl RevealRule {
    fn flag(self) -> &'static str {
        match self {
            RevealRule::Scheduled => "REVEAL_SCHEDULED",
        }
    }

    pub fn key(self) -> PipelineKey {
        PipelineKey {
            shader: "sampling.wgsl",
            entry: "reveal",
            variant: Variant::default().flag(self.flag()),
            slots: REVEAL_LAYOUT.to_vec(),
        }
    }
}

/// Words of the reveal log of a block of `block` rows: a count, then (step, row, id,
/// confidence bits) per reveal; every row is revealed at most once per block.
pub fn reveal_log_words(block: usize) -> usize {
    1 + 4 * block
}

/// Buffers of the sampling kernel and the reveal stage.
pub struct SampleIo<'a> {
    pub params: SampleParams,
    pub steps: &'a StepTable,
    /// `[rows, V]` logits (or probabilities / log-probs for the probes).
    pub logits: &'a wgpu::Buffer,
    /// The device-side block.
    pub tokens: &'a wgpu::Buffer,
    /// `[step, block row] -> (id, value bits)`.
    pub draws: &'a wgpu::Buffer,
    pub reveal_log: &'a wgpu::Buffer,
}

/// The sampling dispatch (`rows` workgroups by default) and the reveal dispatch for `rule`.
pub async fn dispatches(
    ctx: &GpuContext,
    io: SampleIo<'_>,
    rows: u32,
    rule: RevealRule,
) -> Result<(Dispatch, Dispatch)> {
    let sp = uniform(ctx, "sample params", &io.params);
    let sample_buffers = [
        Bound::Buffer(&sp),
        Bound::Steps(io.steps),
        Bound::Buffer(io.logits),
        Bound::Buffer(io.tokens),
        Bound::Buffer(io.draws),
    ];
    let (compiled, bind_group) = compile_and_bind(ctx, &sample_key(), &sample_buffers).await?;
    let sample = Dispatch {
        kernel: "sample",
        layer: None,
        compiled,
        bind_group,
        grid: Grid::Fixed(rows, 1),
        cost: Cost {
            // SUBS log-softmax and nucleus passes over the vocabulary, per row.
            flops: 40 * rows as u64 * io.params.vocab as u64,
            streams: false,
            ..Cost::default()
        },
    };
    let reveal_buffers = [
        Bound::Buffer(&sp),
        Bound::Steps(io.steps),
        Bound::Buffer(io.tokens),
        Bound::Buffer(io.draws),
        Bound::Buffer(io.reveal_log),
    ];
    let (compiled, bind_group) = compile_and_bind(ctx, &rule.key(), &reveal_buffers).await?;
    let reveal = Dispatch {
        kernel: "reveal",
        layer: None,
        compiled,
        bind_group,
        grid: Grid::Fixed(1, 1),
        cost: Cost::default(),
    };
    Ok((sample, reveal))
}
