//! Every buffer, uniform and bind group of a forward, created once per engine from the typed
//! kernels of [`crate::kernels`], and the lists of dispatches one step records.
//!
//! A forward of one block: the embedding gather (with the first LayerNorm), then per layer
//! QKV (K/V into the ring cache), attention partials over splits of the window, their
//! combine, the attention output projection (partial sums per K split), the residual update
//! (with the second LayerNorm), MLP in (+ GELU), MLP out (partial sums) and the residual update
//! (with the next layer's, or the final, LayerNorm): 8 dispatches per layer. Then the LM head
//! (all rows, or the step's draw row), the sampler and, inside a block, the reveal stage.
//!
//! A call runs B rows, or 2B when the store pass of the previous block is folded into it
//! (`[clean block ; denoised block]`, block-causal: see `Step` in uniforms.wgsl), so the row
//! buffers and the projections are sized for 2B rows; the LM head and the sampler only ever
//! see the denoised block.

use crate::context::GpuContext;
use crate::dispatch::{storage, AttnParams, Call, Dispatch, DispatchInfo, MatmulParams};
use crate::dispatch::{NormParams, SampleParams, StepTable, INDIRECT_BYTES};
use crate::error::{GpuError, Result};
use crate::kernels::attention::{self, Attention, AttentionIo};
use crate::kernels::matmul::{self, Epilogue, Matmul, MatmulIo};
use crate::kernels::norm::{self, Embed, EmbedIo, Residual, ResidualIo};
use crate::kernels::sample::{self, draws_words, entropy_offset, hist_words, parts_words};
use crate::kernels::sample::{reveal_log_words, RevealRule, SampleIo, SAMPLE_PASSES};
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
    /// The block a store pass commits, alone or folded (its own buffer, so a pending store
    /// pass and the next block's uploads never share one).
    pub commit_tokens: wgpu::Buffer,
    pub x: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    /// `[step, block row] -> (id, value bits)`: what the sampler drew; then the entropies.
    pub draws: wgpu::Buffer,
    /// Indirect dispatch arguments of a parallel block's later steps (one (x, y, z) per
    /// dispatch of [`Plan::indirect_list`]), emptied by the reveal stage once it is complete.
    pub next_args: wgpu::Buffer,
    /// The reveal log of the current block (sampling.wgsl).
    pub reveal_log: wgpu::Buffer,
    /// Readback of the reveal log followed by the draws table.
    pub staging: wgpu::Buffer,
    /// Slots `0..block` for the steps of a block, slot `block` for the store pass.
    pub steps: StepTable,
    /// The attention kernels' split of the window (`Step.kv_split`).
    pub attention: Attention,
    pub embed: Dispatch,
    pub layers: Vec<LayerDispatches>,
    pub head_all: Dispatch,
    pub head_one: Dispatch,
    /// The sampler's passes over every row of the block, and over the step's draw row only.
    pub sample: Vec<Dispatch>,
    pub sample_one: Vec<Dispatch>,
    /// The reveal stage of each [`RevealRule`], in the order of [`RevealRule::ALL`].
    pub reveals: Vec<Dispatch>,
    /// Buffers only referenced by bind groups, counted for memory accounting.
    pub scratch_bytes: u64,
}

/// Checks the model against what the kernels support, with a reason when it does not fit.
pub fn check_supported(ctx: &GpuContext, cfg: &bd3lm::Config) -> Result<()> {
    let (b, h, d) = (cfg.block_size, cfg.hidden_dim, cfg.head_dim());
    let unsupported = |m: String| Err(GpuError::Unsupported(m));
    // A call runs up to 2B rows (a folded store pass), and the parallel reveal stages sort a
    // block's rows in one thread.
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
    let cache = (cfg.n_layers * ring_slots(cfg) * h * 4) as u64;
    if cache > ctx.max_binding_bytes() {
        return unsupported(format!(
            "the KV cache ({} MB per K and V) exceeds one storage binding",
            cache / 1_000_000
        ));
    }
    Ok(())
}

/// Slots of the ring KV cache: the context plus one block, so that a folded call's denoised
/// rows (written after the window that slid past them) never overwrite the oldest keys its
/// clean rows still attend to.
pub fn ring_slots(cfg: &bd3lm::Config) -> usize {
    cfg.model_length + cfg.block_size
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
        let (b, h, v, l) = (cfg.block_size, cfg.hidden_dim, cfg.vocab_size, cfg.n_layers);
        let tiling = ctx.tiling;
        let f32b = 4u64;
        let none = wgpu::BufferUsages::empty();
        let copy_src = wgpu::BufferUsages::COPY_SRC;
        let copy_dst = wgpu::BufferUsages::COPY_DST;
        // Rows of the biggest call: a folded store pass and the block it rides with.
        let max_rows = 2 * b;
        let ring = ring_slots(cfg);
        let rows_h = (max_rows * h) as u64 * f32b;
        let tokens = storage(ctx, "tokens", (b * 4) as u64, copy_dst);
        let commit_tokens = storage(ctx, "commit tokens", (b * 4) as u64, copy_dst);
        let x = storage(ctx, "x", rows_h, copy_src);
        let xn = storage(ctx, "x normalised", rows_h, none);
        let q = storage(ctx, "q", rows_h, none);
        let attn = storage(ctx, "attn", rows_h, none);
        let hidden = storage(ctx, "mlp hidden", 4 * rows_h, none);
        let logits = storage(ctx, "logits", (b * v) as u64 * f32b, copy_src | copy_dst);
        let cache_bytes = (l * ring * h) as u64 * f32b;
        let kcache = storage(ctx, "k cache", cache_bytes, none);
        let vcache = storage(ctx, "v cache", cache_bytes, none);
        let draws_bytes = (draws_words(b) * 4) as u64;
        let log_bytes = (reveal_log_words(b) * 4) as u64;
        let draws = storage(ctx, "draws", draws_bytes, copy_src);
        // Forward, LM head and sampler of one step.
        let indirect_dispatches = 8 * l as u64 + 2 + SAMPLE_PASSES.len() as u64;
        let next_args = storage(
            ctx,
            "next step dispatch arguments",
            indirect_dispatches * INDIRECT_BYTES,
            copy_dst | wgpu::BufferUsages::INDIRECT,
        );
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
        let attn_out_kernel = Matmul::new(tiling, &lw0.attn_out, Epilogue::Partial, max_rows);
        let mlp_out_kernel = Matmul::new(tiling, &lw0.mlp_out, Epilogue::Partial, max_rows);
        let max_splits = attn_out_kernel
            .tiles
            .splits
            .max(mlp_out_kernel.tiles.splits);
        let partials = storage(ctx, "partial sums", max_splits as u64 * rows_h, none);
        let attention_kernel = Attention::new(
            tiling,
            b,
            cfg.head_dim(),
            cfg.n_heads,
            ctx.workgroup_bytes(),
        );
        let (o_floats, ml_floats) = attention_kernel.partial_floats(h);
        let part_o = storage(ctx, "attention partials", o_floats as u64 * f32b, none);
        let part_ml = storage(ctx, "attention max/sum", ml_floats as u64 * f32b, none);

        let embed_kernel = Embed {
            format: model.embedding.scheme,
        };
        let first_norm = layer_norm(h, lay.norm1(0), lay.modulation(0, 0), lay.modulation(0, 1));
        let embed = norm::embed(
            ctx,
            embed_kernel,
            EmbedIo {
                table: &model.embedding,
                norm: first_norm,
                tokens: &tokens,
                clean_tokens: &commit_tokens,
                steps: &steps,
                vecs: &model.vecs,
                x: &x,
                xn: &xn,
            },
        )
        .await?;

        let mut layers = Vec::with_capacity(l);
        for (li, lw) in model.layers.iter().enumerate() {
            let at = Some(li);
            let cache_layer_off = (li * ring * h) as u32;
            let mm = |matrix, epilogue| Matmul::new(tiling, matrix, epilogue, max_rows);
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
                    rows: max_rows as u32,
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
                    rows: max_rows as u32,
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
        // The sampler's per-tile partials and histograms.
        let sample_parts = storage(ctx, "sample parts", (parts_words(b, v) * 4) as u64, none);
        let sample_hist = storage(ctx, "sample histograms", (hist_words(b) * 4) as u64, none);
        let sample_io = SampleIo {
            params: SampleParams {
                vocab: v as u32,
                mask: cfg.mask_id(),
                block: b as u32,
                entropy_off: entropy_offset(b) as u32,
                ..SampleParams::default()
            },
            steps: &steps,
            logits: &logits,
            tokens: &tokens,
            draws: &draws,
            reveal_log: &reveal_log,
            parts: &sample_parts,
            hist: &sample_hist,
            next_args: &next_args,
        };
        let sample = sample::sample_dispatches(ctx, &sample_io, b as u32).await?;
        let sample_one = sample::sample_dispatches(ctx, &sample_io, 1).await?;
        let mut reveals = Vec::with_capacity(RevealRule::ALL.len());
        for rule in RevealRule::ALL {
            reveals.push(sample::reveal_dispatch(ctx, &sample_io, rule).await?);
        }
        let scratch_bytes = [
            &x,
            &xn,
            &q,
            &attn,
            &hidden,
            &logits,
            &kcache,
            &vcache,
            &partials,
            &part_o,
            &part_ml,
            &sample_parts,
            &sample_hist,
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
            next_args,
            reveal_log,
            staging,
            steps,
            attention: attention_kernel,
            embed,
            layers,
            head_all,
            head_one,
            sample,
            sample_one,
            reveals,
            scratch_bytes,
        })
    }

    /// The dispatches of one forward: a store pass alone (`store_only`: stopping after the
    /// last layer's QKV, which is all it needs), or a denoising forward (its store pass folded
    /// in or not) with `head`.
    pub fn forward(&self, store_only: bool, head: Head) -> Vec<&Dispatch> {
        let mut out = Vec::with_capacity(8 * self.layers.len() + 4);
        out.push(&self.embed);
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            if store_only && i == last {
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

    /// The sampler's passes matching a head (every row, or the draw row).
    pub fn sampler(&self, head: Head) -> &[Dispatch] {
        if head == Head::One {
            &self.sample_one
        } else {
            &self.sample
        }
    }

    pub fn reveal(&self, rule: RevealRule) -> &Dispatch {
        let i = RevealRule::ALL.iter().position(|&r| r == rule).unwrap_or(0);
        &self.reveals[i]
    }

    /// The dispatches of one step of a block: forward, LM head, sampler, reveal stage.
    pub fn block_step(&self, head: Head, rule: RevealRule) -> Vec<&Dispatch> {
        let mut out = self.indirect_list(head);
        out.push(self.reveal(rule));
        out
    }

    /// The dispatches of a step that a parallel block's later steps record indirectly (all
    /// but the reveal stage): forward, LM head, sampler.
    pub fn indirect_list(&self, head: Head) -> Vec<&Dispatch> {
        let mut out = self.forward(false, head);
        out.extend(self.sampler(head));
        out
    }

    /// What each dispatch of one step of a block streams in `call`.
    pub fn step_infos(&self, head: Head, call: &Call) -> Vec<DispatchInfo> {
        self.block_step(head, RevealRule::Scheduled)
            .iter()
            .filter(|d| d.runs(call))
            .map(|d| d.info(call))
            .collect()
    }
}
