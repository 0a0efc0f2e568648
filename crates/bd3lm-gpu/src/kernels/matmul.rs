//! `matmul.wgsl`: every projection and the LM head over a block's rows.

use super::{compile_and_bind, Layout};
use crate::context::GpuContext;
use crate::dispatch::{format_flag, weight_params, Bound, Cost, Dispatch, Grid, MatmulParams};
use crate::dispatch::{uniform, StepTable};
use crate::error::Result;
use crate::model::GpuMatrix;
use crate::pipelines::{PipelineKey, Slot};
use crate::shaders::Variant;
use crate::tiling::{matmul_tiles, MatmulTiles, Tiling};
use bd3lm::quant::Scheme;

/// What a matmul does with its sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// Columns [0,H) to q, [H,2H) and [2H,3H) to the K and V caches at the block's ring slots.
    Qkv,
    /// `acc + bias` from the step's draw row on (the LM head).
    Bias,
    /// `gelu_tanh(acc + bias)` (MLP in).
    Gelu,
    /// Raw partial sums per K split, added by `residual.wgsl` (attention out, MLP out).
    Partial,
}

impl Epilogue {
    fn flag(self) -> &'static str {
        match self {
            Epilogue::Qkv => "EPI_QKV",
            Epilogue::Bias => "EPI_BIAS",
            Epilogue::Gelu => "EPI_GELU",
            Epilogue::Partial => "EPI_PARTIAL",
        }
    }

    fn layout(self) -> Layout {
        const PLAIN: Layout = &[
            (0, Slot::Uniform),
            (1, Slot::Uniform),
            (2, Slot::StepTable),
            (3, Slot::Read),
            (4, Slot::Read),
            (5, Slot::Read),
            (6, Slot::Read),
            (7, Slot::ReadWrite),
        ];
        const QKV: Layout = &[
            (0, Slot::Uniform),
            (1, Slot::Uniform),
            (2, Slot::StepTable),
            (3, Slot::Read),
            (4, Slot::Read),
            (5, Slot::Read),
            (6, Slot::Read),
            (7, Slot::ReadWrite),
            (8, Slot::ReadWrite),
            (9, Slot::ReadWrite),
        ];
        match self {
            Epilogue::Qkv => QKV,
            _ => PLAIN,
        }
    }
}

/// One matmul kernel: weight format, epilogue, rows and tiles. `rows` is the most rows a call
/// runs (the projections: 2B, a folded call; the call's own count is `Step.rows`); the LM head
/// (`Epilogue::Bias`) always runs exactly `rows` rows from the draw row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matmul {
    pub format: Scheme,
    pub epilogue: Epilogue,
    pub rows: u32,
    pub tiles: MatmulTiles,
}

impl Matmul {
    /// The kernel for `matrix` under `tiling` (K splits only for the partial-sum epilogue).
    pub fn new(tiling: Tiling, matrix: &GpuMatrix, epilogue: Epilogue, rows: usize) -> Matmul {
        Matmul {
            format: matrix.scheme,
            epilogue,
            rows: rows as u32,
            tiles: matmul_tiles(
                tiling,
                matrix.rows,
                matrix.cols,
                epilogue == Epilogue::Partial,
                rows,
                kstep(matrix.scheme),
            ),
        }
    }

    /// The staged path's workgroup memory (vec4s: the staged chunk, or one per thread), a
    /// thread's rows per reduction round and its rounds.
    pub fn staging(&self) -> (u32, u32, u32) {
        let t = &self.tiles;
        let xs = (t.staged_rows() * t.chunk(kstep(self.format)) / 4).max(t.wg);
        let rg = (1..=t.rpt)
            .rev()
            .find(|&g| t.rpt.is_multiple_of(g) && g * t.wg <= xs)
            .unwrap_or(1);
        (xs, rg, t.rpt / rg)
    }

    pub fn key(&self) -> PipelineKey {
        let mut variant = Variant::default()
            .flag(format_flag(self.format))
            .flag(self.epilogue.flag())
            .constant("ROWS", self.rows)
            .constant("COLS", self.tiles.cols)
            .constant("WG", self.tiles.wg);
        if self.tiles.staged {
            let (xs, rg, ng) = self.staging();
            variant = variant
                .flag("STAGED")
                .constant("LANES", self.tiles.lanes)
                .constant("RPT", self.tiles.rpt)
                .constant("RSPLIT", self.tiles.rsplit)
                .constant("KV", kstep(self.format) / 4)
                .constant("XS", xs)
                .constant("RG", rg)
                .constant("NG", ng);
        }
        PipelineKey {
            shader: "matmul.wgsl",
            entry: "main",
            variant,
            slots: self.epilogue.layout().to_vec(),
        }
    }
}

/// Values of one wide weight step of `format` (`KSTEP` in weights.wgsl): one vec4<u32> word
/// (two for F32).
pub fn kstep(format: Scheme) -> u32 {
    match format {
        Scheme::F32 | Scheme::F16 => 8,
        Scheme::Q8 => 16,
        Scheme::Q4 => 32,
    }
}

/// The buffers of one matmul dispatch (bound in the order of the kernel's layout).
pub struct MatmulIo<'a> {
    pub matrix: &'a GpuMatrix,
    pub vecs: &'a wgpu::Buffer,
    /// Bias offset and, for QKV, the hidden size and the layer's cache offset; `n` and
    /// `k_slice` are filled in from the matrix and the tiles.
    pub params: MatmulParams,
    pub steps: &'a StepTable,
    pub input: &'a wgpu::Buffer,
    pub output: &'a wgpu::Buffer,
    /// K and V caches (QKV only).
    pub caches: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
}

/// Builds the dispatch (`kernel` and `layer` name it in profiles).
pub async fn dispatch(
    ctx: &GpuContext,
    m: Matmul,
    io: MatmulIo<'_>,
    kernel: &'static str,
    layer: Option<usize>,
) -> Result<Dispatch> {
    let params = MatmulParams {
        n: io.matrix.rows as u32,
        k_slice: m.tiles.k_slice,
        ..io.params
    };
    let (wp, mp) = (
        weight_params(ctx, io.matrix),
        uniform(ctx, "matmul params", &params),
    );
    let mut buffers = vec![
        Bound::Buffer(&wp),
        Bound::Buffer(&mp),
        Bound::Steps(io.steps),
        Bound::Buffer(io.input),
        Bound::Buffer(io.matrix.first()),
        Bound::Buffer(io.matrix.second()),
        Bound::Buffer(io.vecs),
        Bound::Buffer(io.output),
    ];
    if let (Epilogue::Qkv, Some((k, v))) = (m.epilogue, io.caches) {
        buffers.push(Bound::Buffer(k));
        buffers.push(Bound::Buffer(v));
    }
    let (compiled, bind_group) = compile_and_bind(ctx, &m.key(), &buffers).await?;
    let (x, y) = m.tiles.grid(io.matrix.rows);
    Ok(Dispatch {
        kernel,
        layer,
        compiled,
        bind_group,
        grid: Grid::Fixed(x, y),
        cost: {
            let per_row = 2 * io.matrix.rows as u64 * io.matrix.cols as u64;
            let (flops, flops_per_row) = if m.epilogue == Epilogue::Bias {
                (per_row * m.rows as u64, 0)
            } else {
                (0, per_row)
            };
            Cost {
                weight_bytes: io.matrix.bytes(),
                flops,
                flops_per_row,
                ..Cost::default()
            }
        },
    })
}
