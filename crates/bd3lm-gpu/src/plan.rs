//! The forward pass as a fixed list of dispatches: every buffer, uniform and bind group is
//! created once per engine, so a denoising step only writes the block's tokens and two small
//! uniforms, records the dispatches and reads back the drawn ids.

use crate::context::GpuContext;
use crate::error::{GpuError, Result};
use crate::model::{GpuMatrix, GpuModel};
use crate::pipelines::{PipelineCache, PipelineKey};
use crate::shaders::Variant;

pub(crate) use crate::dispatch::{
    bind, format_flag, storage, uniform, weight_params, AttnParams, MatmulParams,
};
pub use crate::dispatch::{mode, Dispatch, SampleStep, StepParams};

pub struct LayerDispatches {
    pub qkv: Dispatch,
    pub attention: Dispatch,
    pub attn_out: Dispatch,
    pub mlp_in: Dispatch,
    pub mlp_out: Dispatch,
}

pub struct Plan {
    pub block: usize,
    pub tokens: wgpu::Buffer,
    pub x: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    pub result: wgpu::Buffer,
    pub result_staging: wgpu::Buffer,
    pub step_main: wgpu::Buffer,
    pub step_row: wgpu::Buffer,
    pub sample_step: wgpu::Buffer,
    pub embed: Dispatch,
    pub layers: Vec<LayerDispatches>,
    pub head_all: Dispatch,
    pub head_one: Dispatch,
    pub sample: Dispatch,
    /// Buffers only referenced by bind groups, kept for their lifetime and memory accounting.
    pub scratch_bytes: u64,
}

/// Checks the model against what the kernels support, with a reason when it does not fit.
pub fn check_supported(ctx: &GpuContext, cfg: &bd3lm::Config) -> Result<()> {
    let (b, h, d) = (cfg.block_size, cfg.hidden_dim, cfg.head_dim());
    let unsupported = |m: String| Err(GpuError::Unsupported(m));
    if b > 16 {
        return unsupported(format!(
            "block_size {b} > 16 (the released models use 4, 8 and 16); use --backend cpu"
        ));
    }
    if h % 8 != 0 || d % 4 != 0 || d > 128 {
        return unsupported(format!(
            "hidden_dim {h} must be a multiple of 8 and head dim {d} a multiple of 4, at most 128"
        ));
    }
    let cache = (cfg.n_layers * cfg.model_length * h * 4) as u64;
    if cache > ctx.max_binding_bytes() {
        return unsupported(format!(
            "the KV cache ({} MB per K and V) exceeds one storage binding",
            cache / 1_000_000
        ));
    }
    Ok(())
}

/// Inputs per shared tile of the LN matmuls: `rows * XT <= 2048` floats, a multiple of 64.
fn input_tile(rows: usize) -> u32 {
    ((2048 / rows) / 64 * 64).max(64) as u32
}

/// Keys per attention tile so the kernel's workgroup memory stays within 16 KiB.
pub(crate) fn attention_tile(block: usize, head_dim: usize) -> u32 {
    let mut kt = 64;
    while kt > 4 && block * head_dim + kt * head_dim + block * kt + 3 * block > 4000 {
        kt /= 2;
    }
    kt as u32
}

/// Threads per output column for this adapter (see matmul.wgsl).
pub fn lanes_for(ctx: &GpuContext) -> u32 {
    if ctx.is_software() {
        1
    } else {
        8
    }
}

#[derive(Clone, Copy)]
pub(crate) struct MatmulSpec<'a> {
    pub lanes: u32,
    pub matrix: &'a GpuMatrix,
    pub vecs: &'a wgpu::Buffer,
    pub rows: usize,
    pub flags: &'a [&'static str],
    pub params: MatmulParams,
    pub input: &'a wgpu::Buffer,
    pub output: &'a wgpu::Buffer,
    pub step: &'a wgpu::Buffer,
    pub caches: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
}

pub(crate) async fn matmul(
    ctx: &GpuContext,
    cache: &PipelineCache,
    spec: MatmulSpec<'_>,
) -> Result<Dispatch> {
    let mut variant = Variant::default()
        .flag(format_flag(spec.matrix.scheme))
        .constant("ROWS", spec.rows as u32)
        .constant("XT", input_tile(spec.rows))
        .constant("LANES", spec.lanes);
    if spec.lanes > 1 {
        variant = variant.flag("SPLIT_K");
    }
    for f in spec.flags {
        variant = variant.flag(f);
    }
    let pipeline = cache
        .get(
            ctx,
            PipelineKey {
                shader: "matmul.wgsl",
                entry: "main",
                variant,
            },
        )
        .await?;
    let wp = weight_params(ctx, spec.matrix);
    let mp = uniform(ctx, "matmul params", &spec.params, false);
    let mut buffers = vec![
        &wp,
        &mp,
        spec.step,
        spec.input,
        spec.matrix.first(),
        spec.matrix.second(),
        spec.vecs,
        spec.output,
    ];
    if let Some((k, v)) = spec.caches {
        buffers.push(k);
        buffers.push(v);
    }
    let bind_group = bind(ctx, &pipeline, &buffers);
    Ok(Dispatch {
        pipeline,
        bind_group,
        groups: spec.matrix.rows.div_ceil(256 / spec.lanes as usize) as u32,
    })
}

impl Plan {
    pub async fn new(ctx: &GpuContext, cache: &PipelineCache, model: &GpuModel) -> Result<Plan> {
        let cfg = &model.config;
        check_supported(ctx, cfg)?;
        let (b, h, v, n, l) = (
            cfg.block_size,
            cfg.hidden_dim,
            cfg.vocab_size,
            cfg.model_length,
            cfg.n_layers,
        );
        let d = cfg.head_dim();
        let f32b = 4u64;
        let copy_src = wgpu::BufferUsages::COPY_SRC;
        let tokens = storage(ctx, "tokens", (b * 4) as u64, wgpu::BufferUsages::COPY_DST);
        let x = storage(ctx, "x", (b * h) as u64 * f32b, copy_src);
        let q = storage(ctx, "q", (b * h) as u64 * f32b, wgpu::BufferUsages::empty());
        let attn = storage(
            ctx,
            "attn",
            (b * h) as u64 * f32b,
            wgpu::BufferUsages::empty(),
        );
        let hidden = storage(
            ctx,
            "mlp hidden",
            (b * 4 * h) as u64 * f32b,
            wgpu::BufferUsages::empty(),
        );
        let logits = storage(
            ctx,
            "logits",
            (b * v) as u64 * f32b,
            copy_src | wgpu::BufferUsages::COPY_DST,
        );
        let kcache = storage(
            ctx,
            "k cache",
            (l * n * h) as u64 * f32b,
            wgpu::BufferUsages::empty(),
        );
        let vcache = storage(
            ctx,
            "v cache",
            (l * n * h) as u64 * f32b,
            wgpu::BufferUsages::empty(),
        );
        let result = storage(ctx, "result", (b * 8) as u64, copy_src);
        let result_staging = ctx.create_buffer(&wgpu::BufferDescriptor {
            label: Some("result staging"),
            size: ((b * 8) as u64).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let step0 = StepParams {
            cached: 0,
            ring_start: 0,
            n_ctx: n as u32,
            row_offset: 0,
        };
        let step_main = uniform(ctx, "step", &step0, true);
        let step_row = uniform(ctx, "step (one row)", &step0, true);
        let sample_step = uniform(ctx, "sample step", &SampleStep::default(), true);

        let embed_pipeline = cache
            .get(
                ctx,
                PipelineKey {
                    shader: "embed.wgsl",
                    entry: "main",
                    variant: Variant::default().flag(format_flag(model.embedding.scheme)),
                },
            )
            .await?;
        let ewp = weight_params(ctx, &model.embedding);
        let embed = Dispatch {
            bind_group: bind(
                ctx,
                &embed_pipeline,
                &[
                    &ewp,
                    &tokens,
                    model.embedding.first(),
                    model.embedding.second(),
                    &x,
                ],
            ),
            pipeline: embed_pipeline,
            groups: (b * h / 8).div_ceil(64) as u32,
        };

        let lay = model.vec_layout;
        let lanes = lanes_for(ctx);
        let attn_variant = Variant::default()
            .constant("ROWS", b as u32)
            .constant("HEAD_DIM", d as u32)
            .constant("KT", attention_tile(b, d));
        let attn_pipeline = cache
            .get(
                ctx,
                PipelineKey {
                    shader: "attention.wgsl",
                    entry: "main",
                    variant: attn_variant,
                },
            )
            .await?;
        // What every block-row matmul of the forward shares; each call below names the rest.
        let block_spec = MatmulSpec {
            lanes,
            matrix: &model.lm_head,
            vecs: &model.vecs,
            rows: b,
            flags: &[],
            params: MatmulParams::default(),
            input: &x,
            output: &x,
            step: &step_main,
            caches: None,
        };
        let mut layers = Vec::with_capacity(l);
        for (li, lw) in model.layers.iter().enumerate() {
            let cache_layer_off = (li * n * h) as u32;
            let qkv = matmul(
                ctx,
                cache,
                MatmulSpec {
                    matrix: &lw.qkv,
                    flags: &["LN", "EPI_QKV"],
                    params: MatmulParams {
                        n: (3 * h) as u32,
                        norm_off: lay.norm1(li) as u32,
                        shift_off: lay.modulation(li, 0) as u32,
                        scale_off: lay.modulation(li, 1) as u32,
                        hidden: h as u32,
                        cache_layer_off,
                        ..Default::default()
                    },
                    input: &x,
                    output: &q,
                    caches: Some((&kcache, &vcache)),
                    ..block_spec
                },
            )
            .await?;
            let ap = uniform(
                ctx,
                "attention params",
                &AttnParams {
                    hidden: h as u32,
                    cache_layer_off,
                    scale: 1.0 / (d as f32).sqrt(),
                    pad: 0,
                },
                false,
            );
            let attention = Dispatch {
                bind_group: bind(
                    ctx,
                    &attn_pipeline,
                    &[&ap, &step_main, &q, &kcache, &vcache, &model.rope, &attn],
                ),
                pipeline: attn_pipeline.clone(),
                groups: cfg.n_heads as u32,
            };
            let attn_out = matmul(
                ctx,
                cache,
                MatmulSpec {
                    matrix: &lw.attn_out,
                    flags: &["EPI_RESIDUAL"],
                    params: MatmulParams {
                        n: h as u32,
                        gate_off: lay.modulation(li, 2) as u32,
                        ..Default::default()
                    },
                    input: &attn,
                    output: &x,
                    ..block_spec
                },
            )
            .await?;
            let mlp_in = matmul(
                ctx,
                cache,
                MatmulSpec {
                    matrix: &lw.mlp_in,
                    flags: &["LN", "EPI_GELU"],
                    params: MatmulParams {
                        n: (4 * h) as u32,
                        norm_off: lay.norm2(li) as u32,
                        shift_off: lay.modulation(li, 3) as u32,
                        scale_off: lay.modulation(li, 4) as u32,
                        bias_off: lay.mlp_in_bias(li) as u32,
                        ..Default::default()
                    },
                    input: &x,
                    output: &hidden,
                    ..block_spec
                },
            )
            .await?;
            let mlp_out = matmul(
                ctx,
                cache,
                MatmulSpec {
                    matrix: &lw.mlp_out,
                    flags: &["EPI_RESIDUAL", "BIAS"],
                    params: MatmulParams {
                        n: h as u32,
                        gate_off: lay.modulation(li, 5) as u32,
                        bias_off: lay.mlp_out_bias(li) as u32,
                        ..Default::default()
                    },
                    input: &hidden,
                    output: &x,
                    ..block_spec
                },
            )
            .await?;
            layers.push(LayerDispatches {
                qkv,
                attention,
                attn_out,
                mlp_in,
                mlp_out,
            });
        }
        let head_params = MatmulParams {
            n: v as u32,
            norm_off: lay.final_norm() as u32,
            shift_off: lay.final_modulation(0) as u32,
            scale_off: lay.final_modulation(1) as u32,
            bias_off: lay.lm_head_bias() as u32,
            ..Default::default()
        };
        let head_all = matmul(
            ctx,
            cache,
            MatmulSpec {
                matrix: &model.lm_head,
                flags: &["LN", "EPI_BIAS"],
                params: head_params,
                input: &x,
                output: &logits,
                ..block_spec
            },
        )
        .await?;
        let head_one = matmul(
            ctx,
            cache,
            MatmulSpec {
                matrix: &model.lm_head,
                rows: 1,
                flags: &["LN", "EPI_BIAS"],
                params: head_params,
                input: &x,
                output: &logits,
                step: &step_row,
                ..block_spec
            },
        )
        .await?;
        let sample_pipeline = cache
            .get(
                ctx,
                PipelineKey {
                    shader: "sampling.wgsl",
                    entry: "main",
                    variant: Variant::default(),
                },
            )
            .await?;
        let sample = Dispatch {
            bind_group: bind(
                ctx,
                &sample_pipeline,
                &[&sample_step, &logits, &tokens, &result],
            ),
            pipeline: sample_pipeline,
            groups: b as u32,
        };
        let scratch_bytes = [&x, &q, &attn, &hidden, &logits, &kcache, &vcache]
            .iter()
            .map(|b| b.size())
            .sum();
        ctx.check()?;
        Ok(Plan {
            block: b,
            tokens,
            x,
            logits,
            result,
            result_staging,
            step_main,
            step_row,
            sample_step,
            embed,
            layers,
            head_all,
            head_one,
            sample,
            scratch_bytes,
        })
    }

    /// Records the network up to the last layer; `kv_only` stops after the last layer's QKV
    /// (the commit pass only needs the keys and values).
    pub fn record_layers(&self, pass: &mut wgpu::ComputePass<'_>, kv_only: bool) {
        self.embed.record(pass, None);
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            l.qkv.record(pass, None);
            if kv_only && i == last {
                break;
            }
            l.attention.record(pass, None);
            l.attn_out.record(pass, None);
            l.mlp_in.record(pass, None);
            l.mlp_out.record(pass, None);
        }
    }

    /// Dispatches in one denoising draw: embedding, 5 per layer, LM head, sampling.
    pub fn dispatches_per_draw(&self) -> usize {
        1 + 5 * self.layers.len() + 2
    }
}
