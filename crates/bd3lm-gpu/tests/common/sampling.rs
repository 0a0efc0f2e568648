//! The sampling kernel's modes and the reveal stages (first hitting, confidence, entropy)
//! against the CPU sampler.

use super::*;

fn step(vocab: usize, mode: u32, seed: u64, top_p: f64, mask_prob: f32) -> SampleStep {
    SampleStep {
        vocab,
        mode,
        seed,
        top_p,
        mask_prob,
    }
}

/// The sampling kernel's modes against the CPU reference sampler: a small vocabulary (a few
/// tiles per row), the full-size one drawn for one row (197 tiles of 256), 16 rows (tiles of
/// 768: several logits per thread), and a flat
/// row whose nucleus border falls among thousands of near-equal probabilities (every level
/// of the border search holds many of them).
pub async fn sampling_modes(ctx: &GpuContext) {
    modes_match_cpu(ctx, 3000, 4, 4.0, 60).await;
    modes_match_cpu(ctx, 50258, 1, 6.0, 61).await;
    modes_match_cpu(ctx, 12000, 16, 6.0, 62).await;
    modes_match_cpu(ctx, 20000, 2, 0.05, 63).await;
    special_rows(ctx).await;
}

async fn modes_match_cpu(ctx: &GpuContext, v: usize, rows: usize, scale: f32, data_seed: u64) {
    let mask = (v - 1) as u32;
    let logits = random(rows * v, data_seed, scale);
    let masked = vec![mask; rows];
    let cpu_logp = {
        let mut l = logits.clone();
        sampler::subs_log_probs(&mut l, &masked, v, mask);
        l
    };
    // Nucleus probe: kept counts and masses.
    let kept = launch::sample(
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
        assert_eq!(kept[r].0 as usize, count, "V {v} row {r}: kept count");
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
        let gpu = launch::sample(
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
            let gpu = launch::sample(ctx, &logits, &masked, step(v, m, seed, top_p, mp))
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
                assert_eq!(gpu[r].0, cpu, "V {v} mode {m} row {r} seed {seed}");
                if cpu != mask {
                    assert!(
                        (gpu[r].1 as f64 - p[cpu as usize]).abs() < 1e-5,
                        "confidence of row {r}"
                    );
                }
                if m == mode::FIRST_HITTING {
                    let h = sampler::entropy(&p);
                    assert!(
                        (gpu[r].2 as f64 - h).abs() < 1e-4 * h.max(1.0),
                        "entropy of row {r}: {} vs {h}",
                        gpu[r].2
                    );
                }
            }
        }
    }
}

/// Clean rows, the t = 0 quirk and a row whose largest probability exceeds top_p.
async fn special_rows(ctx: &GpuContext) {
    let (v, rows) = (3000usize, 4usize);
    let mask = (v - 1) as u32;
    let logits = random(rows * v, 60, 4.0);
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
        let gpu = launch::sample(ctx, &logits, &tokens, step(v, m, 3, top_p, mp))
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
            if m == mode::FIRST_HITTING && tokens[r] != mask {
                assert_eq!(gpu[r].2.to_bits(), 0, "a clean row's entropy is +0");
            }
        }
    }
    // One dominant token: the nucleus keeps it alone, an entropy of exactly 0 as on the CPU.
    let mut peaked = vec![0.0f32; v];
    peaked[5] = 40.0;
    let gpu = launch::sample(
        ctx,
        &peaked,
        &[mask],
        step(v, mode::FIRST_HITTING, 1, 0.9, 0.0),
    )
    .await
    .expect("draw runs");
    assert_eq!((gpu[0].0, gpu[0].1, gpu[0].2.to_bits()), (5, 1.0, 0));
}

/// The parallel reveal stages against the core's selection functions, which define the
/// semantics: confidences and entropies drawn from a few exactly representable values (ties,
/// and values equal to the bound), every block size up to 16, random masks. Checks the rows
/// revealed, the block written, the log, and that the later steps' dispatches are emptied
/// exactly when no row is left masked.
pub async fn reveal_rules(ctx: &GpuContext) {
    let mask = 99u32;
    let values = [0.0f32, 0.125, 0.25, 0.5, 0.75, 0.9, 1.0];
    let mut g = SplitMix64::new(77);
    let mut pick = |n: usize| g.below(n);
    for case in 0..24 {
        let b = [1, 2, 3, 5, 8, 16][case % 6];
        let rule = if case % 2 == 0 {
            RevealRule::Confidence
        } else {
            RevealRule::Entropy
        };
        let bound = match rule {
            RevealRule::Confidence => [0.5f64, 0.75, 0.9, 1.0][case / 2 % 4],
            _ => [0.0f64, 0.25, 0.375, 1.0][case / 2 % 4],
        };
        let tokens: Vec<u32> = (0..b)
            .map(|r| {
                if r == 0 || pick(3) > 0 {
                    mask
                } else {
                    r as u32
                }
            })
            .collect();
        let draws: Vec<(u32, f32, f32)> = (0..b)
            .map(|r| {
                (
                    10 + r as u32,
                    values[pick(values.len())],
                    values[pick(values.len())],
                )
            })
            .collect();
        let index = case % 3;
        let got = launch::reveal(ctx, rule, bound as f32, index, &tokens, mask, &draws)
            .await
            .expect("reveal runs");
        let masked: Vec<usize> = (0..b).filter(|&r| tokens[r] == mask).collect();
        let want = match rule {
            RevealRule::Confidence => {
                let c: Vec<(usize, f32)> = masked.iter().map(|&r| (r, draws[r].1)).collect();
                sampler::select_confident(&c, bound)
            }
            _ => {
                let c: Vec<(usize, f32)> = masked.iter().map(|&r| (r, draws[r].2)).collect();
                sampler::select_low_entropy(&c, bound)
            }
        };
        let what = format!("{rule:?} {bound} B {b}: {tokens:?} {draws:?}");
        let log_rows: Vec<usize> = got.log.iter().map(|e| e.1 as usize).collect();
        assert_eq!(log_rows, want, "{what}");
        for &(k, r, id, c) in &got.log {
            assert_eq!(
                (k as usize, id, c),
                (index, draws[r as usize].0, draws[r as usize].1)
            );
        }
        let mut after = tokens.clone();
        for &r in &want {
            after[r] = draws[r].0;
        }
        assert_eq!(got.tokens, after, "{what}");
        assert_eq!(got.emptied, !after.contains(&mask), "{what}");
    }
    // The semantics' own corner cases: a tie at the top goes to the lowest row; a threshold
    // met exactly counts; an entropy prefix whose sum before its last equals gamma is taken.
    for (rule, bound, draws, want) in [
        (
            RevealRule::Confidence,
            0.9f32,
            [(1, 0.5f32, 0.0f32), (2, 0.5, 0.0), (3, 0.25, 0.0)],
            vec![0],
        ),
        (
            RevealRule::Confidence,
            0.5,
            [(1, 0.5, 0.0), (2, 0.25, 0.0), (3, 0.5, 0.0)],
            vec![0, 2],
        ),
        (
            RevealRule::Entropy,
            0.25,
            [(1, 0.0, 0.25), (2, 0.0, 0.25), (3, 0.0, 0.5)],
            vec![0, 1],
        ),
        (
            RevealRule::Entropy,
            0.0,
            [(1, 0.0, 0.5), (2, 0.0, 0.5), (3, 0.0, 0.5)],
            vec![0],
        ),
        (
            RevealRule::Entropy,
            0.125,
            [(1, 0.0, 0.5), (2, 0.0, 0.125), (3, 0.0, 0.25)],
            vec![1, 2],
        ),
    ] {
        let got = launch::reveal(ctx, rule, bound, 0, &[mask; 3], mask, &draws)
            .await
            .expect("reveal runs");
        let rows: Vec<usize> = got.log.iter().map(|e| e.1 as usize).collect();
        assert_eq!(rows, want, "{rule:?} {bound} {draws:?}");
    }
}
