//! Test bodies shared by the native tests (lavapipe) and the browser tests (WebGPU): every
//! kernel against a plain CPU loop on seeded random inputs.
#![allow(dead_code)]

use bd3lm::forward::{gelu_tanh, layer_norm_modulate, matmul as cpu_matmul};
use bd3lm::quant::{Matrix, Scheme};
use bd3lm::rng::SplitMix64;
use bd3lm::sampler;
use bd3lm_gpu::kernels::{self, AttentionInputs, MatmulKind, MatmulVectors};
use bd3lm_gpu::plan::{mode, SampleStep};
use bd3lm_gpu::GpuContext;

pub fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut g = SplitMix64::new(seed);
    (0..n)
        .map(|_| ((g.next_f64() * 2.0 - 1.0) as f32) * scale)
        .collect()
}

pub fn max_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
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

fn cpu_matmul_ref(
    m: &Matrix,
    x: &[f32],
    rows: usize,
    kind: MatmulKind,
    v: &MatmulVectors,
    out: &[f32],
) -> Vec<f32> {
    let (k, n) = (m.cols, m.rows);
    let w = m.to_f32();
    let mut input = x.to_vec();
    if matches!(kind, MatmulKind::LnBias | MatmulKind::LnGelu) {
        layer_norm_modulate(&mut input, x, v.norm, v.shift, v.scale);
    }
    let mut acc = vec![0.0; rows * n];
    cpu_matmul(&mut acc, &input, &w, rows, k, n);
    let mut res = out.to_vec();
    for r in 0..rows {
        for c in 0..n {
            let a = acc[r * n + c];
            let i = r * n + c;
            match kind {
                MatmulKind::LnBias => res[i] = a + v.bias[c],
                MatmulKind::LnGelu => res[i] = gelu_tanh(a + v.bias[c]),
                MatmulKind::Residual => res[i] += v.gate[c] * a,
                MatmulKind::ResidualBias => res[i] += v.gate[c] * (a + v.bias[c]),
            }
        }
    }
    res
}

/// Every weight format x every epilogue, with block-sized and single-row inputs. Each of those
/// is its own pipeline, and a software WebGPU adapter (SwiftShader) takes about a second to
/// compile one: with `exhaustive` false every format x epilogue pair runs one (rows, lanes)
/// shape, rotating so each shape is still covered (the native tests run the full product).
pub async fn matmul_variants(ctx: &GpuContext, exhaustive: bool) {
    let (k, n) = (96, 70);
    let base = Matrix::from_f32(n, k, random(n * k, 11, 0.2));
    let vectors = (
        random(k, 12, 0.3),
        random(k, 13, 0.5),
        random(k, 14, 0.5),
        random(n, 15, 0.5),
        random(n, 16, 1.0),
    );
    let norm: Vec<f32> = vectors.0.iter().map(|x| 1.0 + x).collect();
    let v = MatmulVectors {
        norm: &norm,
        shift: &vectors.1,
        scale: &vectors.2,
        bias: &vectors.3,
        gate: &vectors.4,
    };
    const SHAPES: [(usize, u32); 5] = [(1, 1), (4, 8), (16, 1), (16, 8), (5, 8)];
    let mut pair = 0;
    for scheme in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let m = base.quantize(scheme);
        for kind in [
            MatmulKind::LnBias,
            MatmulKind::LnGelu,
            MatmulKind::Residual,
            MatmulKind::ResidualBias,
        ] {
            let shapes = if exhaustive {
                SHAPES.to_vec()
            } else {
                vec![SHAPES[pair % SHAPES.len()]]
            };
            pair += 1;
            for (rows, lanes) in shapes {
                let x = random(rows * k, 20 + rows as u64, 2.0);
                let out = random(rows * n, 30, 1.0);
                let gpu = kernels::matmul(ctx, lanes, &m, &x, rows, kind, &v, &out)
                    .await
                    .expect("matmul runs");
                let cpu = cpu_matmul_ref(&m, &x, rows, kind, &v, &out);
                let err = max_err(&gpu, &cpu);
                assert!(
                    err < 3e-4,
                    "{scheme:?} {kind:?} rows {rows} lanes {lanes}: max error {err}"
                );
            }
        }
    }
}

pub async fn embed_formats(ctx: &GpuContext) {
    let (v, h) = (50, 64);
    let table = Matrix::from_f32(v, h, random(v * h, 40, 1.0));
    let tokens = [3u32, 0, 49, 17, 17, 8];
    for scheme in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let m = table.quantize(scheme);
        let gpu = kernels::embed(ctx, &m, &tokens).await.expect("embed runs");
        let deq = m.to_f32();
        let cpu: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| deq[t as usize * h..(t as usize + 1) * h].to_vec())
            .collect();
        assert_eq!(
            gpu, cpu,
            "{scheme:?}: gather equals the CPU dequantised rows exactly"
        );
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

/// Attention over a ring-buffer cache that wraps, against a direct CPU loop.
pub async fn attention_ring(ctx: &GpuContext) {
    for (heads, d, block, n_ctx, cached, ring_start) in [
        (4, 16, 4, 64, 40, 50),
        (2, 64, 16, 96, 80, 16),
        (3, 8, 8, 32, 0, 0),
    ] {
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
        let q = random(block * h, 50, 1.0);
        let kc = random(n_ctx * h, 51, 1.0);
        let vc = random(n_ctx * h, 52, 1.0);
        let inputs = AttentionInputs {
            heads,
            head_dim: d,
            block,
            n_ctx,
            cached,
            ring_start,
            q: &q,
            k_cache: &kc,
            v_cache: &vc,
            rope: &rope,
        };
        let gpu = kernels::attention(ctx, &inputs)
            .await
            .expect("attention runs");
        let mut cpu = vec![0.0; block * h];
        let total = cached + block;
        for hd in 0..heads {
            for r in 0..block {
                let qr = rotate(
                    &q[r * h + hd * d..r * h + (hd + 1) * d],
                    cached + r,
                    &rope,
                    n_ctx,
                );
                let scores: Vec<f64> = (0..total)
                    .map(|j| {
                        let slot = (ring_start + j) % n_ctx;
                        let kj = rotate(
                            &kc[slot * h + hd * d..slot * h + (hd + 1) * d],
                            j,
                            &rope,
                            n_ctx,
                        );
                        qr.iter().zip(&kj).map(|(a, b)| (a * b) as f64).sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
                for e in 0..d {
                    let mut o = 0.0;
                    for (j, s) in scores.iter().enumerate() {
                        let slot = (ring_start + j) % n_ctx;
                        o += (s - mx).exp() / z * vc[slot * h + hd * d + e] as f64;
                    }
                    cpu[r * h + hd * d + e] = o as f32;
                }
            }
        }
        let err = max_err(&gpu, &cpu);
        assert!(
            err < 1e-5,
            "heads {heads} d {d} block {block} cached {cached}: max error {err}"
        );
    }
}

fn step(vocab: usize, mode: u32, seed: u64, top_p: f64, mask_prob: f32) -> SampleStep {
    SampleStep {
        vocab: vocab as u32,
        mask: (vocab - 1) as u32,
        row_offset: 0,
        mode,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        top_p: top_p as f32,
        mask_prob,
    }
}

/// The sampling kernel's modes against the CPU reference sampler.
pub async fn sampling_modes(ctx: &GpuContext) {
    let (v, rows) = (3000usize, 4usize);
    let mask = (v - 1) as u32;
    let logits = random(rows * v, 60, 4.0);
    let masked = vec![mask; rows];
    let cpu_logp = {
        let mut l = logits.clone();
        sampler::subs_log_probs(&mut l, &masked, v, mask);
        l
    };
    // Nucleus probe: kept counts and masses.
    let kept = kernels::sample(
        ctx,
        &logits,
        &masked,
        step(v, mode::NUCLEUS_PROBE, 0, 0.9, 0.0),
    )
    .await
    .expect("probe runs");
    for r in 0..rows {
        let mut p = sampler::probs_from_log_probs(&cpu_logp[r * v..(r + 1) * v]);
        let (count, mass) = sampler::nucleus(&mut p, 0.9);
        assert_eq!(kept[r].0 as usize, count, "row {r}: kept count");
        assert!(
            (kept[r].1 as f64 - mass).abs() < 1e-5,
            "row {r}: kept mass {} vs {mass}",
            kept[r].1
        );
    }
    // Race probe on given probabilities.
    let probs: Vec<f64> = (0..rows)
        .flat_map(|r| sampler::probs_from_log_probs(&cpu_logp[r * v..(r + 1) * v]))
        .collect();
    let q32: Vec<f32> = probs.iter().map(|&x| x as f32).collect();
    for seed in [1u64, 99, 12345] {
        let gpu = kernels::sample(
            ctx,
            &q32,
            &masked,
            step(v, mode::RACE_PROBE, seed, 1.0, 0.0),
        )
        .await
        .expect("race runs");
        for r in 0..rows {
            let cpu = sampler::race(&probs[r * v..(r + 1) * v], seed, (r * v) as u64);
            assert_eq!(gpu[r].0, cpu, "race row {r} seed {seed}");
        }
    }
    // Full draws: first hitting and posterior with the nucleus, against the CPU path.
    for (m, mp, top_p) in [
        (mode::FIRST_HITTING, 0.0f32, 0.9),
        (mode::POSTERIOR, 0.6, 0.9),
        (mode::POSTERIOR, 0.0, 1.0),
    ] {
        for seed in [5u64, 6, 7] {
            let gpu = kernels::sample(ctx, &logits, &masked, step(v, m, seed, top_p, mp))
                .await
                .expect("draw runs");
            for r in 0..rows {
                let mut p = sampler::probs_from_log_probs(&cpu_logp[r * v..(r + 1) * v]);
                sampler::nucleus(&mut p, top_p);
                let q = if m == mode::POSTERIOR {
                    sampler::posterior_row(&p, mp, mask)
                } else {
                    p.clone()
                };
                let cpu = sampler::race(&q, seed, (r * v) as u64);
                assert_eq!(gpu[r].0, cpu, "mode {m} row {r} seed {seed}");
                if cpu != mask {
                    assert!(
                        (gpu[r].1 as f64 - p[cpu as usize]).abs() < 1e-5,
                        "confidence of row {r}"
                    );
                }
            }
        }
    }
    // Clean rows and the t = 0 quirk follow the reference's NaN/inf semantics.
    let tokens = [7u32, mask, 0, mask];
    let mut clean_logp = logits.clone();
    sampler::subs_log_probs(&mut clean_logp, &tokens, v, mask);
    for (m, mp, top_p) in [
        (mode::FIRST_HITTING, 0.0f32, 0.9),
        (mode::POSTERIOR, 0.5, 0.9),
        (mode::POSTERIOR_T0_QUIRK, f32::NEG_INFINITY, 0.9),
        (mode::POSTERIOR_T0_QUIRK, f32::NEG_INFINITY, 1.0),
    ] {
        let gpu = kernels::sample(ctx, &logits, &tokens, step(v, m, 3, top_p, mp))
            .await
            .expect("draw runs");
        for r in 0..rows {
            let mut p = sampler::probs_from_log_probs(&clean_logp[r * v..(r + 1) * v]);
            sampler::nucleus(&mut p, top_p);
            let q = if m == mode::FIRST_HITTING {
                p.clone()
            } else {
                sampler::posterior_row(&p, mp, mask)
            };
            assert_eq!(
                gpu[r].0,
                sampler::race(&q, 3, (r * v) as u64),
                "mode {m} top_p {top_p} row {r} (token {})",
                tokens[r]
            );
        }
    }
}
