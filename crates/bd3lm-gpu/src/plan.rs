//! Every buffer, uniform and bind group of a forward, created once per engine from the typed
//! kernels of [`crate::kernels`], and the lists of dispatches one step records.
//!
//! A forward of one block: the embedding gather (with the first LayerNorm), then per layer
//! QKV (K/V into the ring cache), attention partials over splits of the window, their
//! combine, the attention output projection (partial sums per K split), the residual update
//! (with the second LayerNorm), MLP in (+ GELU), MLP out (partial sums) and the residual update
//! (with the next layer's, or the final, LayerNorm): 8 dispatches per layer. Then the LM head
//! (all rows, or the step's draw row), the sampler and, inside a block, the reveal stage.

use crate::context::GpuContext;
use crate::dispatch::{storage, AttnParams, Dispatch, DispatchInfo, MatmulParams, NormParams};
use crate::dispatch::{SampleParams, StepTable};
use crate::error::{GpuError, Result};
use crate::kernels::attention::{self, Attention, AttentionIo};
use crate::kernels::matmul::{self, Epilogue, Matmul, MatmulIo};
use crate::kernels::norm::{self, Embed, EmbedIo, Residual, ResidualIo};
use crate::kernels::sample::{self, reveal_log_words, RevealRule, SampleIo};
use crate::model::{GpuModel, VecLayout};

pub use crate::dispatch::{mode, Step};

pub struct LayerDispatches {
    pub qkv: Dispatch,
    pub attention: Dispatch,
    pub combine: Dispatch,
    pub attn_out: Dispatch,
    pub attn_residual: Dispatch,
    pub mlp_in: Dispatch,
    pub mlp_out: Dispatch,
    pub mlp_residual: Dispatch,
}

impl LayerDispatches {
    /// The layer's dispatches in recording order.
    pub fn all(&self) -> [&Dispatch; 8] {
        [
            &self.qkv,
            &self.attention,
            &self.combine,
            &self.attn_out,
            &self.attn_residual,
            &self.mlp_in,
            &self.mlp_out,
            &self.mlp_residual,
        ]
    }
}

/// Which LM head a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// None (the store pass, activations).
    None,
    /// Every row of the block.
    All,
    /// The step's draw row only (first hitting).
    One,
}

pub struct Plan {
    pub block: usize,
    /// The device-side block that denoising steps read and the reveal stage writes.
    pub tokens: wgpu::Buffer,
    /// The block a store pass commits (its own buffer, so a pending store pass and the next
    /// block's uploads never share one).
    pub commit_tokens: wgpu::Buffer,
    pub x: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    /// `[step, block row] -> (id, value bits)`: what the sampler drew.
    pub draws: wgpu::Buffer,
    /// The reveal log of the current block (sampling.wgsl).
    pub reveal_log: wgpu::Buffer,
    /// Readback of the reveal log followed by the draws table.
    pub staging: wgpu::Buffer,
    /// Slots `0..block` for the steps of a block, slot `block` for the store pass.
    pub steps: StepTable,
    /// The attention kernels' split of the window (`Step.kv_split`).
    pub attention: Attention,
    pub embed: Dispatch,
    pub embed_commit: Dispatch,
    pub layers: Vec<LayerDispatches>,
    pub head_all: Dispatch,
    pub head_one: Dispatch,
    /// The sampler over every row of the block, and over the step's draw row only.
    pub sample: Dispatch,
    pub sample_one: Dispatch,
    pub reveal: Dispatch,
    /// Buffers only referenced by bind groups, counted for memory accounting.
    pub scratch_bytes: u64,
}

/// Checks the model against what the kernels support, with a reason when it does not fit.
pub fn check_supported(ctx: &GpuContext, cfg: &bd3lm::Config) -> Result<()> {
    let (b, h, d) = (cfg.block_size, cfg.hidden_dim, cfg.head_dim());
    let unsupported = |m: String| Err(GpuError::Unsupported(m));
    if b == 0 || b > 16 {
        return unsupported(format!(
            "block_size {b} is not in 1..=16 (the released models use 4, 8 and 16); use --backend cpu"
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

/// LayerNorm offsets of `norm` and its (shift, scale) modulation chunks.
fn layer_norm(h: usize, norm: usize, shift: usize, scale: usize) -> NormParams {
    NormParams {
        n: h as u32,
        norm_off: norm as u32,
        shift_off: shift as u32,
        scale_off: scale as u32,
        ..NormParams::default()
    }
}

/// The LayerNorm after layer `li`'s MLP: the next layer's first, or the final one.
fn next_norm(lay: &VecLayout, h: usize, li: usize, layers: usize) -> NormParams {
    if li + 1 < layers {
        layer_norm(
            h,
            lay.norm1(li + 1),
            lay.modulation(li + 1, 0),
            lay.modulation(li + 1, 1),
        )
    } else {
        layer_norm(
            h,
            lay.final_norm(),
            lay.final_modulation(0),
            lay.final_modulation(1),
        )
    }
}

impl Plan {
    pub async fn new(ctx: &GpuContext, model: &GpuModel) -> Result<Plan> {
        let cfg = &model.config;
        check_supported(ctx, cfg)?;
        let (b, h, v, n, l) = (
            cfg.block_size,
            cfg.hidden_dim,
            cfg.vocab_size,
            cfg.model_length,
            cfg.n_layers,
        );
        let tiling = ctx.tiling;
        let f32b = 4u64;
        let none = wgpu::BufferUsages::empty();
        let copy_src = wgpu::BufferUsages::COPY_SRC;
        let copy_dst = wgpu::BufferUsages::COPY_DST;
        let rows_h = (b * h) as u64 * f32b;
        let tokens = storage(ctx, "tokens", (b * 4) as u64, copy_dst);
        let commit_tokens = storage(ctx, "commit tokens", (b * 4) as u64, copy_dst);
        let x = storage(ctx, "x", rows_h, copy_src);
        let xn = storage(ctx, "x normalised", rows_h, none);
        let q = storage(ctx, "q", rows_h, none);
        let attn = storage(ctx, "attn", rows_h, none);
        let hidden = storage(ctx, "mlp hidden", 4 * rows_h, none);
        let logits = storage(ctx, "logits", (b * v) as u64 * f32b, copy_src | copy_dst);
        let cache_bytes = (l * n * h) as u64 * f32b;
        let kcache = storage(ctx, "k cache", cache_bytes, none);
        let vcache = storage(ctx, "v cache", cache_bytes, none);
        let draws_bytes = (b * b * 8) as u64;
        let log_bytes = (reveal_log_words(b) * 4) as u64;
        let draws = storage(ctx, "draws", draws_bytes, copy_src);
        let reveal_log = storage(ctx, "reveal log", log_bytes, copy_src | copy_dst);
        let staging = ctx.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback staging"),
            size: (log_bytes + draws_bytes).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::MAP_READ | copy_dst,
            mapped_at_creation: false,
        });
        let steps = StepTable::new(ctx, b as u32 + 1);
        let lay = model.vec_layout;

        // The residual projections share one partial-sum buffer sized for the most K splits.
        let lw0 = model
            .layers
            .first()
            .ok_or_else(|| GpuError::Unsupported("a model needs at least one layer".into()))?;
        let attn_out_kernel = Matmul::new(tiling, &lw0.attn_out, Epilogue::Partial, b);
        let mlp_out_kernel = Matmul::new(tiling, &lw0.mlp_out, Epilogue::Partial, b);
        let max_splits = attn_out_kernel
            .tiles
            .splits
            .max(mlp_out_kernel.tiles.splits);
        let partials = storage(ctx, "partial sums", max_splits as u64 * rows_h, none);
        let attention_kernel = Attention::new(tiling, b, cfg.head_dim(), cfg.n_heads);
        let (o_floats, ml_floats) = attention_kernel.partial_floats(h);
        let part_o = storage(ctx, "attention partials", o_floats as u64 * f32b, none);
        let part_ml = storage(ctx, "attention max/sum", ml_floats as u64 * f32b, none);

        let embed_kernel = Embed {
            format: model.embedding.scheme,
            rows: b as u32,
        };
        let first_norm = layer_norm(h, lay.norm1(0), lay.modulation(0, 0), lay.modulation(0, 1));
        let embed_io = |tokens| EmbedIo {
            table: &model.embedding,
            norm: first_norm,
            tokens,
            vecs: &model.vecs,
            x: &x,
            xn: &xn,
        };
        let embed = norm::embed(ctx, embed_kernel, embed_io(&tokens)).await?;
        let embed_commit = norm::embed(ctx, embed_kernel, embed_io(&commit_tokens)).await?;

        let mut layers = Vec::with_capacity(l);
        for (li, lw) in model.layers.iter().enumerate() {
            let at = Some(li);
            let cache_layer_off = (li * n * h) as u32;
            let mm = |matrix, epilogue| Matmul::new(tiling, matrix, epilogue, b);
            let io = |matrix, params, input, output| MatmulIo {
                matrix,
                vecs: &model.vecs,
                params,
                steps: &steps,
                input,
                output,
                caches: None,
            };
            let qkv_params = MatmulParams {
                hidden: h as u32,
                cache_layer_off,
                ..Default::default()
            };
            let qkv = matmul::dispatch(
                ctx,
                mm(&lw.qkv, Epilogue::Qkv),
                MatmulIo {
                    caches: Some((&kcache, &vcache)),
                    ..io(&lw.qkv, qkv_params, &xn, &q)
                },
                "qkv",
                at,
            )
            .await?;
            let (attention, combine) = attention::dispatches(
                ctx,
                attention_kernel,
                AttentionIo {
                    params: AttnParams {
                        hidden: h as u32,
                        heads: cfg.n_heads as u32,
                        cache_layer_off,
                        scale: 1.0 / (cfg.head_dim() as f32).sqrt(),
                    },
                    steps: &steps,
                    q: &q,
                    k_cache: &kcache,
                    v_cache: &vcache,
                    rope: &model.rope,
                    part_o: &part_o,
                    part_ml: &part_ml,
                    out: &attn,
                },
                at,
            )
            .await?;
            let attn_out_k = mm(&lw.attn_out, Epilogue::Partial);
            let attn_out = matmul::dispatch(
                ctx,
                attn_out_k,
                io(&lw.attn_out, MatmulParams::default(), &attn, &partials),
                "attn_out",
                at,
            )
            .await?;
            let residual_io = |splits: u32, gate, bias, next: NormParams| ResidualIo {
                norm: NormParams {
                    splits,
                    gate_off: gate as u32,
                    bias_off: bias as u32,
                    ..next
                },
                partials: &partials,
                vecs: &model.vecs,
                x: &x,
                xn: &xn,
            };
            let norm2 = layer_norm(
                h,
                lay.norm2(li),
                lay.modulation(li, 3),
                lay.modulation(li, 4),
            );
            let attn_residual = norm::residual(
                ctx,
                Residual {
                    bias: false,
                    rows: b as u32,
                },
                residual_io(attn_out_k.tiles.splits, lay.modulation(li, 2), 0, norm2),
                "attn_residual",
                at,
            )
            .await?;
            let mlp_in_params = MatmulParams {
                bias_off: lay.mlp_in_bias(li) as u32,
                ..Default::default()
            };
            let mlp_in = matmul::dispatch(
                ctx,
                mm(&lw.mlp_in, Epilogue::Gelu),
                io(&lw.mlp_in, mlp_in_params, &xn, &hidden),
                "mlp_in",
                at,
            )
            .await?;
            let mlp_out_k = mm(&lw.mlp_out, Epilogue::Partial);
            let mlp_out = matmul::dispatch(
                ctx,
                mlp_out_k,
                io(&lw.mlp_out, MatmulParams::default(), &hidden, &partials),
                "mlp_out",
                at,
            )
            .await?;
            let mlp_residual = norm::residual(
                ctx,
                Residual {
                    bias: true,
                    rows: b as u32,
                },
                residual_io(
                    mlp_out_k.tiles.splits,
                    lay.modulation(li, 5),
                    lay.mlp_out_bias(li),
                    next_norm(&lay, h, li, l),
                ),
                "mlp_residual",
                at,
            )
            .await?;
            layers.push(LayerDispatches {
                qkv,
                attention,
                combine,
                attn_out,
                attn_residual,
                mlp_in,
                mlp_out,
                mlp_residual,
            });
        }
        let head_params = MatmulParams {
            bias_off: lay.lm_head_bias() as u32,
            ..Default::default()
        };
        let head = |rows| {
            matmul::dispatch(
                ctx,
                Matmul::new(tiling, &model.lm_head, Epilogue::Bias, rows),
                MatmulIo {
                    matrix: &model.lm_head,
                    vecs: &model.vecs,
                    params: head_params,
                    steps: &steps,
                    input: &xn,
                    output: &logits,
                    caches: None,
                },
                if rows == 1 { "lm_head_row" } else { "lm_head" },
                None,
            )
        };
        let head_all = head(b).await?;
        let head_one = head(1).await?;
        let (sample, reveal) = sample::dispatches(
            ctx,
            SampleIo {
                params: SampleParams {
                    vocab: v as u32,
                    mask: cfg.mask_id(),
                    block: b as u32,
                    pad: 0,
                },
                steps: &steps,
                logits: &logits,
                tokens: &tokens,
                draws: &draws,
                reveal_log: &reveal_log,
            },
            b as u32,
            RevealRule::Scheduled,
        )
        .await?;
        let sample_one = Dispatch {
            grid: crate::dispatch::Grid::Fixed(1, 1),
            ..sample.clone()
        };
        let scratch_bytes = [
            &x, &xn, &q, &attn, &hidden, &logits, &kcache, &vcache, &partials, &part_o, &part_ml,
        ]
        .iter()
        .map(|b| b.size())
        .sum();
        ctx.check()?;
        Ok(Plan {
            block: b,
            tokens,
            commit_tokens,
            x,
            logits,
            draws,
            reveal_log,
            staging,
            steps,
            attention: attention_kernel,
            embed,
            embed_commit,
            layers,
            head_all,
            head_one,
            sample,
            sample_one,
            reveal,
            scratch_bytes,
        })
    }

    /// The dispatches of one forward: the store pass (`commit`: its own tokens, stopping
    /// after the last layer's QKV, which is all it needs), or a denoising forward with `head`.
    pub fn forward(&self, commit: bool, head: Head) -> Vec<&Dispatch> {
        let mut out = Vec::with_capacity(8 * self.layers.len() + 4);
        out.push(if commit {
            &self.embed_commit
        } else {
            &self.embed
        });
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            if commit && i == last {
                out.push(&l.qkv);
                break;
            }
            out.extend(l.all());
        }
        match head {
            Head::None => {}
            Head::All => out.push(&self.head_all),
            Head::One => out.push(&self.head_one),
        }
        out
    }

    /// The sampler matching a head (every row, or the draw row).
    pub fn sampler(&self, head: Head) -> &Dispatch {
        if head == Head::One {
            &self.sample_one
        } else {
            &self.sample
        }
    }

    /// The dispatches of one step of a block: forward, LM head, sampler, reveal stage.
    pub fn block_step(&self, head: Head) -> Vec<&Dispatch> {
        let mut out = self.forward(false, head);
        out.push(self.sampler(head));
        out.push(&self.reveal);
        out
    }

    /// What each dispatch of one step of a block streams at a window of `cached` tokens.
    pub fn step_infos(&self, head: Head, cached: usize) -> Vec<DispatchInfo> {
        self.block_step(head)
            .iter()
            .map(|d| d.info(cached))
            .collect()
    }
}
