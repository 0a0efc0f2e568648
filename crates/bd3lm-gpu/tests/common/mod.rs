//! Test bodies shared by the native tests (lavapipe) and the browser tests (WebGPU): every
//! kernel against a plain CPU loop on seeded random inputs.
#![allow(dead_code)]

mod generation;
mod sampling;
// Not every test target uses every helper.
#[allow(unused_imports)]
pub use generation::*;
#[allow(unused_imports)]
pub use sampling::{reveal_rules, sampling_modes};

use bd3lm::forward::{gelu_tanh, layer_norm_modulate, matmul as cpu_matmul};
use bd3lm::quant::{Matrix, Scheme};
use bd3lm::rng::SplitMix64;
use bd3lm::sampler;
use bd3lm_gpu::kernels::launch::{self, AttentionInputs, MatmulKind, NormVectors, SampleStep};
use bd3lm_gpu::kernels::sample::RevealRule;
use bd3lm_gpu::plan::mode;
use bd3lm_gpu::{GpuContext, Tiling};

pub fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut g = SplitMix64::new(seed);
    (0..n)
        .map(|_| ((g.next_f64() * 2.0 - 1.0) as f32) * scale)
        .collect()
}

/// The largest difference, infinite where either side has a NaN or an infinity.
pub fn max_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    bd3lm::tolerance::max_abs_diff(a, b) as f32
}

pub async fn smoke(ctx: &GpuContext) {
    let a = random(4000, 1, 1.0);
    let b = random(4000, 2, 1.0);
    let sum = bd3lm_gpu::smoke::add(ctx, &a, &b).await.expect("add runs");
    let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(sum, expected, "vectorised add equals the CPU loop exactly");
    let sums = bd3lm_gpu::smoke::chunk_sums(ctx, &a)
        .await
        .expect("reduce runs");
    assert_eq!(sums.len(), 4);
    for (i, s) in sums.iter().enumerate() {
        let cpu: f64 = a[i * 1024..((i + 1) * 1024).min(a.len())]
            .iter()
            .map(|&x| x as f64)
            .sum();
        assert!(
            (*s as f64 - cpu).abs() < 1e-3,
            "chunk {i}: gpu {s} cpu {cpu}"
        );
    }
}

/// Block sizes the kernels are checked at (the engine supports 1..=16).
pub const BLOCK_SIZES: [usize; 6] = [1, 2, 3, 5, 8, 16];

/// Both tilings: the kernels must agree with the CPU loop whichever split they use.
pub const TILINGS: [Tiling; 2] = [Tiling::Software, Tiling::Hardware];

fn cpu_matmul_ref(m: &Matrix, x: &[f32], rows: usize, kind: MatmulKind, bias: &[f32]) -> Vec<f32> {
    let (k, n) = (m.cols, m.rows);
    let w = m.to_f32();
    let mut acc = vec![0.0; rows * n];
    cpu_matmul(&mut acc, x, &w, rows, k, n);
    for r in 0..rows {
        for c in 0..n {
            let a = acc[r * n + c];
            acc[r * n + c] = match kind {
                MatmulKind::Bias => a + bias[c],
                MatmulKind::Gelu => gelu_tanh(a + bias[c]),
                MatmulKind::Partial => a,
            };
        }
    }
    acc
}

/// Every weight format x every epilogue x both tilings, with block-sized and single-row
/// inputs, at K = 96 and K = 768 (several K splits under the hardware tiling). Each of those
/// is its own pipeline, and a software WebGPU adapter (SwiftShader) takes about a second to
/// compile one: with `exhaustive` false every format x epilogue x tiling runs one shape,
/// rotating so each shape is still covered (the native tests run the full product).
pub async fn matmul_variants(ctx: &GpuContext, exhaustive: bool) {
    const SHAPES: [(usize, usize); 4] = [(1, 96), (16, 96), (5, 768), (16, 768)];
    let n = 70;
    let mut pair = 0;
    for scheme in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4] {
        for kind in [MatmulKind::Bias, MatmulKind::Gelu, MatmulKind::Partial] {
            for tiling in TILINGS {
                let shapes = if exhaustive {
                    SHAPES.to_vec()
                } else {
                    vec![SHAPES[pair % SHAPES.len()]]
                };
                pair += 1;
                for (rows, k) in shapes {
                    let m =
                        Matrix::from_f32(n, k, random(n * k, 11 + k as u64, 0.2)).quantize(scheme);
                    let bias = random(n, 15, 0.5);
                    let x = random(rows * k, 20 + rows as u64, 2.0);
                    let gpu = launch::matmul(ctx, tiling, &m, &x, rows, kind, &bias)
                        .await
                        .expect("matmul runs");
                    let cpu = cpu_matmul_ref(&m, &x, rows, kind, &bias);
                    let err = max_err(&gpu, &cpu);
                    assert!(
                        err < 1e-3,
                        "{scheme:?} {kind:?} {tiling} rows {rows} K {k}: max error {err}"
                    );
                }
            }
        }
    }
}

/// The QKV epilogue in both tilings: q for the block, K and V into a ring cache that wraps,
/// every other cache slot untouched; and a folded call (a clean block of 5 rows at its own
/// window, then the denoised block after the window slid).
pub async fn qkv_epilogue(ctx: &GpuContext) {
    for (rows, clean) in [(5, None), (10, Some((6usize, 14usize)))] {
        qkv_case(ctx, rows, clean).await;
    }
}

async fn qkv_case(ctx: &GpuContext, rows: usize, clean: Option<(usize, usize)>) {
    let (h, n_ctx, cached, ring_start) = (64, 16, 6, 3);
    let m = Matrix::from_f32(3 * h, h, random(3 * h * h, 70, 0.2)).quantize(Scheme::Q8);
    let x = random(rows * h, 71, 1.5);
    let kc = random(n_ctx * h, 72, 1.0);
    let vc = random(n_ctx * h, 73, 1.0);
    let mut qkv = vec![0.0; rows * 3 * h];
    cpu_matmul(&mut qkv, &x, &m.to_f32(), rows, h, 3 * h);
    for tiling in TILINGS {
        let (q, k, v) = launch::qkv(
            ctx,
            &launch::QkvInputs {
                tiling,
                matrix: &m,
                x: &x,
                rows,
                n_ctx,
                cached,
                ring_start,
                clean,
                k_cache: &kc,
                v_cache: &vc,
            },
        )
        .await
        .expect("qkv runs");
        let (mut want_k, mut want_v, mut want_q) = (kc.clone(), vc.clone(), vec![0.0; rows * h]);
        let clean_rows = if clean.is_some() { rows / 2 } else { 0 };
        for r in 0..rows {
            let slot = match clean {
                Some((c, start)) if r < clean_rows => (start + c + r) % n_ctx,
                _ => (ring_start + cached + r - clean_rows) % n_ctx,
            };
            let row = &qkv[r * 3 * h..(r + 1) * 3 * h];
            want_q[r * h..(r + 1) * h].copy_from_slice(&row[..h]);
            want_k[slot * h..(slot + 1) * h].copy_from_slice(&row[h..2 * h]);
            want_v[slot * h..(slot + 1) * h].copy_from_slice(&row[2 * h..]);
        }
        for (name, gpu, cpu) in [("q", &q, &want_q), ("k", &k, &want_k), ("v", &v, &want_v)] {
            let err = max_err(gpu, cpu);
            assert!(err < 1e-4, "{tiling} {name} {clean:?}: max error {err}");
        }
    }
}

/// LayerNorm + modulation of `x` rows as the CPU reference computes it.
fn cpu_norm(x: &[f32], v: &NormVectors) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    layer_norm_modulate(&mut out, x, v.norm, v.shift, v.scale);
    out
}

/// Random LayerNorm, modulation, gate and bias vectors of length `h`.
struct OwnedNorm([Vec<f32>; 5]);

impl OwnedNorm {
    fn new(h: usize, seed: u64) -> OwnedNorm {
        let norm: Vec<f32> = random(h, seed, 0.3).iter().map(|x| 1.0 + x).collect();
        OwnedNorm([
            norm,
            random(h, seed + 1, 0.5),
            random(h, seed + 2, 0.5),
            random(h, seed + 3, 1.0),
            random(h, seed + 4, 0.5),
        ])
    }

    fn view(&self) -> NormVectors<'_> {
        NormVectors {
            norm: &self.0[0],
            shift: &self.0[1],
            scale: &self.0[2],
            gate: &self.0[3],
            bias: &self.0[4],
        }
    }
}

/// The embedding gather of every format with the first LayerNorm (hidden 768: each thread
/// normalises three elements), for every block size the engine supports and a folded call of
/// twice the largest (the first half from the clean block's buffer); nothing is written past
/// the call.
pub async fn embed_formats(ctx: &GpuContext, block_sizes: &[usize]) {
    let (v, h) = (50, 768);
    let table = Matrix::from_f32(v, h, random(v * h, 40, 1.0));
    let vecs = OwnedNorm::new(h, 41);
    let nv = vecs.view();
    for (i, scheme) in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4]
        .into_iter()
        .enumerate()
    {
        let m = table.quantize(scheme);
        let deq = m.to_f32();
        for &rows in block_sizes
            .iter()
            .skip(i % 2)
            .step_by(2)
            .chain(block_sizes.last())
        {
            // The largest size runs folded: as many clean rows in front.
            let clean = if rows == *block_sizes.last().unwrap_or(&0) {
                rows
            } else {
                0
            };
            let rows = rows + clean;
            let tokens: Vec<u32> = (0..rows).map(|r| ((r * 17 + 3) % v) as u32).collect();
            let (x, xn) = launch::embed(ctx, &m, &tokens, clean, &nv)
                .await
                .expect("embed runs");
            let cpu: Vec<f32> = tokens
                .iter()
                .flat_map(|&t| deq[t as usize * h..(t as usize + 1) * h].to_vec())
                .collect();
            assert_eq!(
                &x[..rows * h],
                &cpu[..],
                "{scheme:?} B {rows}: gather is exact"
            );
            assert!(
                x[rows * h..]
                    .iter()
                    .chain(&xn[rows * h..])
                    .all(|&s| s == launch::SENTINEL),
                "{scheme:?} B {rows}: a row past the block was written"
            );
            let err = max_err(&xn[..rows * h], &cpu_norm(&cpu, &nv));
            assert!(err < 1e-4, "{scheme:?} B {rows}: LayerNorm max error {err}");
        }
    }
}

/// The residual update from three K splits (with and without a bias), then the LayerNorm.
pub async fn residual_norm(ctx: &GpuContext) {
    let (h, rows, splits) = (768, 3, 3);
    let x = random(rows * h, 80, 1.0);
    let partials = random(splits * rows * h, 81, 1.0);
    let vecs = OwnedNorm::new(h, 82);
    let nv = vecs.view();
    for bias in [false, true] {
        let (gx, gxn) = launch::residual(ctx, &x, &partials, splits, rows, bias, &nv)
            .await
            .expect("residual runs");
        let mut want = x.clone();
        for r in 0..rows {
            for c in 0..h {
                let mut s = 0.0f32;
                for sp in 0..splits {
                    s += partials[(sp * rows + r) * h + c];
                }
                if bias {
                    s += nv.bias[c];
                }
                want[r * h + c] += nv.gate[c] * s;
            }
        }
        assert!(max_err(&gx, &want) < 1e-5, "bias {bias}: residual");
        let err = max_err(&gxn, &cpu_norm(&want, &nv));
        assert!(err < 1e-4, "bias {bias}: LayerNorm max error {err}");
    }
}

/// Matrices too big for one storage binding are split by rows over two: forced here with a
/// binding limit of a few KiB (`ctx` must have been created with it), for the matmul and the
/// embedding gather.
pub async fn split_bindings(ctx: &GpuContext) {
    let limit = ctx.max_binding_bytes();
    let (n, k) = (300, 96);
    let m = Matrix::from_f32(n, k, random(n * k, 90, 0.2)).quantize(Scheme::Q8);
    let g = launch::upload_matrix(ctx, &m).expect("upload");
    assert!(
        g.parts.len() == 2 && m.bytes() as u64 > limit,
        "{} bytes over a {limit}-byte limit make two bindings",
        m.bytes()
    );
    let bias = random(n, 91, 0.5);
    for tiling in TILINGS {
        for rows in [1, 4] {
            let x = random(rows * k, 92, 1.0);
            let gpu = launch::matmul(ctx, tiling, &m, &x, rows, MatmulKind::Bias, &bias)
                .await
                .expect("matmul runs");
            let err = max_err(&gpu, &cpu_matmul_ref(&m, &x, rows, MatmulKind::Bias, &bias));
            assert!(err < 1e-3, "{tiling} rows {rows}: max error {err}");
        }
    }
    let vecs = OwnedNorm::new(k, 93);
    let nv = vecs.view();
    let tokens = [0u32, 299, 150, 151];
    let (x, _) = launch::embed(ctx, &m, &tokens, 0, &nv)
        .await
        .expect("embed runs");
    let deq = m.to_f32();
    for (r, &t) in tokens.iter().enumerate() {
        let t = t as usize;
        assert_eq!(&x[r * k..(r + 1) * k], &deq[t * k..(t + 1) * k], "row {t}");
    }
}

fn rotate(x: &[f32], pos: usize, rope: &[f32], n_ctx: usize) -> Vec<f32> {
    let half = x.len() / 2;
    let mut out = vec![0.0; x.len()];
    for i in 0..half {
        let (c, s) = (rope[pos * half + i], rope[n_ctx * half + pos * half + i]);
        out[i] = x[i] * c - x[i + half] * s;
        out[i + half] = x[i + half] * c + x[i] * s;
    }
    out
}

/// Attention of `block` query rows (from `q`) at a window of `cached` keys starting at ring
/// slot `ring_start`, as a direct CPU loop.
#[allow(clippy::too_many_arguments)]
fn cpu_attention(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    rope: &[f32],
    (heads, d, block): (usize, usize, usize),
    (n_ctx, ring): (usize, usize),
    cached: usize,
    ring_start: usize,
) -> Vec<f32> {
    let h = heads * d;
    let mut cpu = vec![0.0; block * h];
    let total = cached + block;
    for hd in 0..heads {
        for r in 0..block {
            let qr = rotate(
                &q[r * h + hd * d..r * h + (hd + 1) * d],
                cached + r,
                rope,
                n_ctx,
            );
            let scores: Vec<f64> = (0..total)
                .map(|j| {
                    let slot = (ring_start + j) % ring;
                    let kj = rotate(
                        &kc[slot * h + hd * d..slot * h + (hd + 1) * d],
                        j,
                        rope,
                        n_ctx,
                    );
                    qr.iter().zip(&kj).map(|(a, b)| (a * b) as f64).sum::<f64>() / (d as f64).sqrt()
                })
                .collect();
            let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
            for e in 0..d {
                let mut o = 0.0;
                for (j, s) in scores.iter().enumerate() {
                    let slot = (ring_start + j) % ring;
                    o += (s - mx).exp() / z * vc[slot * h + hd * d + e] as f64;
                }
                cpu[r * h + hd * d + e] = o as f32;
            }
        }
    }
    cpu
}

/// Attention over a ring-buffer cache that wraps, against a direct CPU loop, in both
/// tilings (the hardware one splits the window over several workgroups here), for the block
/// sizes in `block_sizes`, and folded calls: a clean block over the window before it is
/// appended, the denoised block over the window after (the window slid, or not), each group
/// exactly as a call of its own.
pub async fn attention_ring(ctx: &GpuContext, block_sizes: &[usize]) {
    // (tiling, heads, d, block, rope positions, ring slots, cached, ring start, clean window)
    let mut cases = vec![
        (Tiling::Software, 4, 16, 4, 64, 64, 40, 50, None),
        (Tiling::Hardware, 4, 16, 4, 64, 64, 40, 50, None),
        (Tiling::Software, 2, 64, 16, 96, 96, 80, 16, None),
        (Tiling::Hardware, 2, 64, 16, 96, 96, 80, 16, None),
        (Tiling::Hardware, 3, 8, 8, 32, 32, 0, 0, None),
        // Folded, no slide: the clean block was appended at 36 + 4.
        (Tiling::Software, 2, 8, 4, 64, 68, 40, 50, Some((36, 50))),
        (Tiling::Hardware, 2, 16, 4, 64, 68, 40, 50, Some((36, 50))),
        // Folded at a slide: the clean block filled the window, which then moved by a block.
        (Tiling::Hardware, 2, 64, 16, 64, 80, 48, 70, Some((48, 54))),
        (Tiling::Software, 2, 8, 3, 30, 33, 27, 1, Some((27, 31))),
    ];
    for (i, &b) in block_sizes.iter().enumerate() {
        cases.push((TILINGS[i % 2], 2, 8, b, 40, 40, 40 - b - 3, 7, None));
    }
    for (tiling, heads, d, block, n_ctx, ring, cached, ring_start, clean) in cases {
        let h = heads * d;
        let cfg = bd3lm::Config {
            hidden_dim: h,
            n_heads: heads,
            model_length: n_ctx,
            block_size: block,
            cond_dim: 8,
            n_layers: 1,
            ..Default::default()
        };
        let rope = bd3lm_gpu::model::rope_table(&cfg, &bd3lm::checkpoint::default_inv_freq(d));
        let rows = if clean.is_some() { 2 * block } else { block };
        let q = random(rows * h, 50, 1.0);
        let kc = random(ring * h, 51, 1.0);
        let vc = random(ring * h, 52, 1.0);
        let inputs = AttentionInputs {
            tiling,
            heads,
            head_dim: d,
            block,
            n_ctx,
            ring,
            cached,
            ring_start,
            clean,
            q: &q,
            k_cache: &kc,
            v_cache: &vc,
            rope: &rope,
        };
        let (gpu, splits) = launch::attention(ctx, &inputs)
            .await
            .expect("attention runs");
        if tiling == Tiling::Software {
            assert_eq!(splits, 1, "one split of the window in the software tiling");
        } else if d == 64 {
            assert!(splits > 1, "the window is split over workgroups: {splits}");
        }
        let shape = (heads, d, block);
        let mut cpu = Vec::new();
        if let Some((clean_cached, clean_start)) = clean {
            let q_clean = &q[..block * h];
            cpu.extend(cpu_attention(
                q_clean,
                &kc,
                &vc,
                &rope,
                shape,
                (n_ctx, ring),
                clean_cached,
                clean_start,
            ));
        }
        cpu.extend(cpu_attention(
            &q[(rows - block) * h..],
            &kc,
            &vc,
            &rope,
            shape,
            (n_ctx, ring),
            cached,
            ring_start,
        ));
        let err = max_err(&gpu, &cpu);
        assert!(
            err < 1e-5,
            "{tiling} heads {heads} d {d} block {block} cached {cached} clean {clean:?}: max error {err}"
        );
    }
}
