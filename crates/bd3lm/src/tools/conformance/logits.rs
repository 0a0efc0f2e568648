//! The logit checks of the conformance runner: one block's raw logits and the SUBS log-probs
//! computed from them against the fixture, and the planted-NaN check of that comparison.

use super::{commit_prefix, CheckResult, Report, Tolerances};
use crate::engine::EngineProbes;
use crate::fixture::Fixture;
use crate::sampler;
use crate::tolerance::{self, abs_diff, max_abs_diff, worst};

/// Commits the fixture's teacher-forced prefix and returns its block with the engine's raw
/// logits for it: what [`logit_checks`] compares.
pub async fn teacher_forced_logits<E: EngineProbes>(
    fx: &Fixture,
    engine: &mut E,
) -> crate::Result<(Vec<u32>, Vec<f32>)> {
    let block = commit_prefix(fx, engine).await?;
    let logits = engine.logits(&block).await?;
    Ok((block, logits))
}

/// The checks of one block's raw logits against the fixture: the logits themselves on every
/// path the fixture stores, and the SUBS log-probs computed from them. Any NaN or infinity in
/// `logits` fails them (see [`crate::tolerance`]).
pub fn logit_checks(
    fx: &Fixture,
    block: &[u32],
    logits: &[f32],
    tol: Tolerances,
) -> crate::Result<Vec<CheckResult>> {
    let mut report = Report {
        case: &fx.name,
        results: Vec::new(),
    };
    let (v, mask) = (fx.config.vocab_size, fx.config.mask_id());
    let golden = fx.tensor("tf_logits_raw")?.as_f64();
    report.add(
        "logits",
        max_abs_diff(logits, &golden),
        tol.logits,
        "KV-cache path",
    );
    for (name, what) in [
        ("tf_logits_raw_train", "vs training path"),
        ("tf_logits_raw_nocache", "vs no-cache path"),
    ] {
        if let Some(g) = fx.get(name) {
            let check = name.trim_start_matches("tf_").replace("raw_", "");
            report.add(&check, max_abs_diff(logits, &g.as_f64()), tol.logits, what);
        }
    }
    let golden = fx.tensor("tf_logprobs")?.as_f64();
    if logits.len() != block.len() * v || golden.len() != logits.len() {
        report.fail(
            "logprobs",
            format!(
                "{} logits for {} rows of {v} (golden {})",
                logits.len(),
                block.len(),
                golden.len()
            ),
        );
        return Ok(report.results);
    }
    // SUBS log-probs: masked rows within tolerance (the MASK column sits near -1e6, where
    // f32 spacing is 0.0625, so it is compared relative to its size), clean rows exactly.
    let mut logp = logits.to_vec();
    sampler::subs_log_probs(&mut logp, block, v, mask);
    let (mut masked_err, mut mask_col_err, mut clean_err) = (0f64, 0f64, 0f64);
    for (r, &tok) in block.iter().enumerate() {
        for c in 0..v {
            let (ours, theirs) = (logp[r * v + c] as f64, golden[r * v + c]);
            let err = abs_diff(ours, theirs);
            if tok != mask {
                clean_err = worst(clean_err, err);
            } else if c == mask as usize {
                mask_col_err = worst(mask_col_err, err / theirs.abs().max(1.0));
            } else {
                masked_err = worst(masked_err, err);
            }
        }
    }
    report.add(
        "logprobs_masked",
        masked_err,
        tol.logits,
        "masked rows, MASK column excluded",
    );
    report.add(
        "logprobs_mask_column",
        mask_col_err,
        tolerance::MASK_COLUMN_RELATIVE,
        "relative, near -1e6",
    );
    report.add(
        "logprobs_clean",
        clean_err,
        0.0,
        "clean rows are exact one-hots",
    );
    Ok(report.results)
}

/// The NaN-proof comparison on an engine's own logits: the unchanged logits must pass
/// [`logit_checks`], and a NaN, +inf or -inf planted in one logit of one masked row (and of
/// one clean row) must fail the `logits` check with an infinite error (and, in the masked row,
/// the log-prob check). Returns what went wrong, one line each; empty when all is as it must be.
pub fn planted_non_finite_problems(
    fx: &Fixture,
    block: &[u32],
    logits: &[f32],
    tol: Tolerances,
) -> crate::Result<Vec<String>> {
    let (v, mask) = (fx.config.vocab_size, fx.config.mask_id());
    let mut problems: Vec<String> = logit_checks(fx, block, logits, tol)?
        .iter()
        .filter(|r| !r.pass)
        .map(|r| format!("unplanted: {}", r.line()))
        .collect();
    if logits.len() != block.len() * v {
        return Ok(problems);
    }
    let masked_row = block.iter().position(|&t| t == mask);
    let clean_row = block.iter().position(|&t| t != mask);
    for (row, kind) in [(masked_row, "masked"), (clean_row, "clean")] {
        let Some(row) = row else { continue };
        // Not the MASK column, which has its own relative check.
        let col = if mask as usize == v / 2 {
            v / 2 + 1
        } else {
            v / 2
        };
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut planted = logits.to_vec();
            planted[row * v + col] = bad;
            let results = logit_checks(fx, block, &planted, tol)?;
            let mut must_fail = vec!["logits"];
            if kind == "masked" {
                must_fail.push("logprobs_masked");
            }
            for check in must_fail {
                match results.iter().find(|r| r.check == check) {
                    Some(r) if !r.pass && r.max_err == f64::INFINITY => {}
                    Some(r) => problems.push(format!("{bad} in {kind} row {row}: {}", r.line())),
                    None => problems.push(format!("{bad} in {kind} row {row}: no {check} check")),
                }
            }
        }
    }
    Ok(problems)
}
