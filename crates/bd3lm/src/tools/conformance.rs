//! The conformance runner: replays a golden-fixture directory against any engine (through its
//! [`EngineProbes`] hooks) and reports
//! one [`CheckResult`] per check (`PASS|FAIL <case> <check> max_err=.. tol=..`).
//! Everything is driven by the fixture's files, never by its name. Checks named `core/...`
//! exercise only core code (the conditioning constants computed at load, the f64 nucleus
//! filter, the SplitMix64 stream), whatever the engine; the rest run on the engine.

use crate::engine::{EngineProbes, RowDraw, SKIPPED_ROW};
use crate::fixture::{Fixture, TraceConfig};
use crate::generate::{Event, Generator, Replay, SamplerKind, SamplingOptions};
use crate::rng;
use crate::sampler;
use serde_json::json;

#[derive(Debug, Clone, Copy)]
pub struct Tolerances {
    pub logits: f64,
    pub activations: f64,
    /// Nucleus kept mass (f64 on the CPU, f32 sums on a GPU).
    pub mass: f64,
}

impl Tolerances {
    pub const CPU: Tolerances = Tolerances {
        logits: 1e-4,
        activations: 1e-4,
        mass: 1e-12,
    };
    pub const GPU: Tolerances = Tolerances {
        logits: 1e-3,
        activations: 1e-3,
        mass: 1e-5,
    };
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub case: String,
    pub check: String,
    pub pass: bool,
    pub max_err: f64,
    pub tol: f64,
    pub first_divergence: Option<usize>,
    pub detail: String,
}

impl CheckResult {
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {} {} max_err={:.3e} tol={:.1e}",
            if self.pass { "PASS" } else { "FAIL" },
            self.case,
            self.check,
            self.max_err,
            self.tol
        );
        if let Some(step) = self.first_divergence {
            s.push_str(&format!(" first_divergence={step}"));
        }
        if !self.detail.is_empty() {
            s.push_str(&format!(" ({})", self.detail));
        }
        s
    }

    pub fn json(&self) -> String {
        json!({
            "status": if self.pass { "PASS" } else { "FAIL" },
            "case": self.case, "check": self.check, "max_err": self.max_err, "tol": self.tol,
            "first_divergence": self.first_divergence, "detail": self.detail,
        })
        .to_string()
    }
}

/// The results of several cases: what a driver (test, CLI, browser test) prints and asserts.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub cases: usize,
    pub checks: usize,
    /// `line()` of every failed check.
    pub failures: Vec<String>,
    /// Cases in which no trace was replayed (a fixture without traces proves too little).
    pub cases_without_traces: Vec<String>,
}

impl Summary {
    /// Adds one case's results.
    pub fn add(&mut self, results: &[CheckResult]) {
        self.cases += 1;
        self.checks += results.len();
        self.failures
            .extend(results.iter().filter(|r| !r.pass).map(CheckResult::line));
        if !results.iter().any(|r| r.check.starts_with("trace/")) {
            let case = results.first().map_or("?", |r| r.case.as_str());
            self.cases_without_traces.push(case.to_string());
        }
    }

    /// `Ok` when at least one case ran, every check passed and every case replayed a trace;
    /// otherwise what went wrong, one line each.
    pub fn verdict(&self) -> std::result::Result<(), String> {
        let mut problems = self.failures.clone();
        if self.cases == 0 {
            problems.push("no fixture case was run".into());
        }
        for case in &self.cases_without_traces {
            problems.push(format!("{case}: no trace was replayed"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} problem(s) in {} checks on {} case(s):\n{}",
                problems.len(),
                self.checks,
                self.cases,
                problems.join("\n")
            ))
        }
    }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() || y.is_finite())
        .fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

struct Report<'a> {
    case: &'a str,
    results: Vec<CheckResult>,
}

impl Report<'_> {
    fn add(&mut self, check: &str, max_err: f64, tol: f64, detail: impl Into<String>) {
        self.results.push(CheckResult {
            case: self.case.to_string(),
            check: check.to_string(),
            pass: max_err <= tol,
            max_err,
            tol,
            first_divergence: None,
            detail: detail.into(),
        });
    }

    fn fail(&mut self, check: &str, detail: impl Into<String>) {
        self.add(check, f64::INFINITY, 0.0, detail);
    }
}

/// Runs every check the fixture supports against `engine` (built from `fixture.weights`).
pub async fn run<E: EngineProbes>(
    fixture: &Fixture,
    engine: &mut E,
    tol: Tolerances,
) -> Vec<CheckResult> {
    run_observed(fixture, engine, tol, &mut |_| {}).await
}

/// [`run`], calling `observe` with the results so far after each group of checks (progress
/// output and per-check timing in the browser tests).
pub async fn run_observed<E: EngineProbes>(
    fixture: &Fixture,
    engine: &mut E,
    tol: Tolerances,
    observe: &mut dyn FnMut(&[CheckResult]),
) -> Vec<CheckResult> {
    let mut report = Report {
        case: &fixture.name,
        results: Vec::new(),
    };
    check_constants(fixture, &mut report);
    if let Err(e) = teacher_forced(fixture, engine, tol, &mut report).await {
        report.fail("teacher_forced", e.to_string());
    }
    observe(&report.results);
    if let Err(e) = nucleus_checks(fixture, engine, tol, &mut report).await {
        report.fail("nucleus", e.to_string());
    }
    observe(&report.results);
    for trace in &fixture.traces {
        if let Err(e) = categorical(fixture, engine, trace, &mut report).await {
            report.fail(&format!("categorical/{}", trace.name), e.to_string());
        }
        observe(&report.results);
        match replay(fixture, engine, trace).await {
            Ok(r) => report.results.push(r),
            Err(e) => report.fail(&format!("trace/{}", trace.name), e.to_string()),
        }
        observe(&report.results);
    }
    report.results
}

fn check_constants(fx: &Fixture, report: &mut Report) {
    if let Some(c) = fx.get("tf_cond_c") {
        report.add(
            "core/cond_c",
            max_abs_diff(&f64s(&fx.weights.cond), &c.as_f64()),
            1e-5,
            "",
        );
    }
    if let (Some(a), Some(l0)) = (fx.get("tf_l0_adaln"), fx.weights.layers.first()) {
        report.add(
            "core/adaln_l0",
            max_abs_diff(&f64s(&l0.modulation), &a.as_f64()),
            1e-5,
            "",
        );
    }
}

async fn commit_prefix<E: EngineProbes>(fx: &Fixture, engine: &mut E) -> crate::Result<Vec<u32>> {
    let ids: Vec<u32> = fx
        .tensor("tf_input_ids")?
        .as_i64()
        .iter()
        .map(|&x| x as u32)
        .collect();
    let prefix = fx.tensor("tf_prefix_len")?.as_i64()[0] as usize;
    let b = fx.config.block_size;
    engine.reset();
    for start in (0..prefix).step_by(b) {
        engine.commit(&ids[start..start + b]).await?;
    }
    Ok(ids[prefix..prefix + b].to_vec())
}

async fn teacher_forced<E: EngineProbes>(
    fx: &Fixture,
    engine: &mut E,
    tol: Tolerances,
    report: &mut Report<'_>,
) -> crate::Result<()> {
    let (v, mask) = (fx.config.vocab_size, fx.config.mask_id());
    let block = commit_prefix(fx, engine).await?;
    let logits = engine.logits(&block).await?;
    let golden = fx.tensor("tf_logits_raw")?.as_f64();
    report.add(
        "logits",
        max_abs_diff(&f64s(&logits), &golden),
        tol.logits,
        "KV-cache path",
    );
    for (name, what) in [
        ("tf_logits_raw_train", "vs training path"),
        ("tf_logits_raw_nocache", "vs no-cache path"),
    ] {
        if let Some(g) = fx.get(name) {
            let check = name.trim_start_matches("tf_").replace("raw_", "");
            report.add(
                &check,
                max_abs_diff(&f64s(&logits), &g.as_f64()),
                tol.logits,
                what,
            );
        }
    }
    // SUBS log-probs: masked rows within tolerance (the MASK column sits near -1e6, where
    // f32 spacing is 0.0625, so it is compared relative to its size), clean rows exactly.
    let mut logp = logits.clone();
    sampler::subs_log_probs(&mut logp, &block, v, mask);
    let golden = fx.tensor("tf_logprobs")?.as_f64();
    let (mut masked_err, mut mask_col_err, mut clean_err) = (0f64, 0f64, 0f64);
    for (r, &tok) in block.iter().enumerate() {
        for c in 0..v {
            let (ours, theirs) = (logp[r * v + c] as f64, golden[r * v + c]);
            let err = (ours - theirs).abs();
            if tok != mask {
                clean_err = clean_err.max(err);
            } else if c == mask as usize {
                mask_col_err = mask_col_err.max(err / theirs.abs().max(1.0));
            } else {
                masked_err = masked_err.max(err);
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
        1e-6,
        "relative, near -1e6",
    );
    report.add(
        "logprobs_clean",
        clean_err,
        0.0,
        "clean rows are exact one-hots",
    );

    // Activations: compare whatever the backend exposes.
    commit_prefix(fx, engine).await?;
    let act = engine.activations(&block).await?;
    let mut worst = 0f64;
    let mut compared = Vec::new();
    let mut cmp = |name: &str, ours: &[f32]| {
        if let (Some(g), false) = (fx.get(name), ours.is_empty()) {
            worst = worst.max(max_abs_diff(&f64s(ours), &g.as_f64()));
            compared.push(name.trim_start_matches("tf_").to_string());
        }
    };
    for (i, h) in act.hidden.iter().enumerate() {
        cmp(&format!("tf_hidden_{i}"), h);
    }
    cmp("tf_l0_qkv", &act.l0_qkv);
    cmp("tf_l0_attn", &act.l0_attn);
    cmp("tf_l0_attn_proj", &act.l0_attn_proj);
    cmp("tf_l0_after_attn", &act.l0_after_attn);
    cmp("tf_l0_mlp_in", &act.l0_mlp_in);
    cmp("tf_l0_mlp_out", &act.l0_mlp_out);
    if let Some(h1) = act.hidden.get(1) {
        cmp("tf_l0_after_mlp", h1);
    }
    cmp("tf_final_linear_in", &act.final_linear_in);
    if compared.is_empty() {
        report.fail("activations", "the backend exposed no activations");
    } else {
        let detail = compared.join(",");
        report.add("activations", worst, tol.activations, detail);
    }
    Ok(())
}

async fn nucleus_checks<E: EngineProbes>(
    fx: &Fixture,
    engine: &mut E,
    tol: Tolerances,
    report: &mut Report<'_>,
) -> crate::Result<()> {
    let v = fx.config.vocab_size;
    let logp = fx.tensor("tf_logprobs")?.as_f32();
    let golden_counts = fx.tensor("tf_nucleus_p0.9_kept_count")?.as_i64();
    let golden_mass = fx.tensor("tf_nucleus_p0.9_kept_mass")?.as_f64();
    let kept = engine.nucleus_probe(&logp, 0.9).await?;
    let count_mismatch = kept
        .iter()
        .zip(&golden_counts)
        .filter(|((c, _), &g)| *c as i64 != g)
        .count();
    let mass_err = kept
        .iter()
        .zip(&golden_mass)
        .map(|((_, m), g)| (m - g).abs())
        .fold(0.0, f64::max);
    let detail = format!(
        "{} rows, kept-count mismatches {count_mismatch}",
        kept.len()
    );
    report.add("nucleus_kept_count", count_mismatch as f64, 0.0, detail);
    report.add("nucleus_kept_mass", mass_err, tol.mass, "");
    if let Some(g) = fx.get("tf_nucleus_p0.9") {
        // The exact f64 filter of the core crate against the reference's filtered rows.
        let golden = g.as_f64();
        let mut err = 0f64;
        for (r, row) in logp.chunks_exact(v).enumerate() {
            let mut p = sampler::probs_from_log_probs(row);
            sampler::nucleus(&mut p, 0.9);
            err = err.max(max_abs_diff(&p, &golden[r * v..(r + 1) * v]));
        }
        report.add("core/nucleus_rows", err, 1e-12, "the core's f64 filter");
    }
    Ok(())
}

async fn categorical<E: EngineProbes>(
    fx: &Fixture,
    engine: &mut E,
    trace: &TraceConfig,
    report: &mut Report<'_>,
) -> crate::Result<()> {
    let v = fx.config.vocab_size;
    let name = &trace.name;
    let seeds: Vec<u64> = fx
        .tensor(&format!("{name}_uniform_seed"))?
        .as_i64()
        .iter()
        .map(|&s| s as u64)
        .collect();
    let sampled = fx.tensor(&format!("{name}_sampled"))?.as_i64();
    let b = fx.config.block_size;
    if let Some(u) = fx.get(&format!("{name}_uniforms")) {
        let golden = u.as_f64();
        let per_step = b * v;
        let mut err = 0f64;
        for (k, &seed) in seeds.iter().enumerate() {
            for j in 0..per_step {
                err = err.max((rng::uniform(seed, j as u64) - golden[k * per_step + j]).abs());
            }
        }
        report.add(
            &format!("core/uniforms/{name}"),
            err,
            0.0,
            "the core's SplitMix64 stream",
        );
    }
    let (mut mismatches, mut explained, mut total, mut skipped) = (0usize, 0usize, 0usize, 0usize);
    let mut first = None;
    if let Some(p) = fx.get(&format!("{name}_probs")) {
        let probs = p.as_f64();
        for (k, &seed) in seeds.iter().enumerate() {
            let rows = &probs[k * b * v..(k + 1) * b * v];
            let ours = engine.race_probe(rows, seed).await?;
            for (r, &tok) in ours.iter().enumerate() {
                if tok == SKIPPED_ROW {
                    skipped += 1;
                    continue;
                }
                total += 1;
                if tok as i64 != sampled[k * b + r] {
                    mismatches += 1;
                    first.get_or_insert(k);
                    if near_tie(
                        &rows[r * v..(r + 1) * v],
                        seed,
                        r * v,
                        tok,
                        sampled[k * b + r] as u32,
                    ) {
                        explained += 1;
                    }
                }
            }
        }
    } else if let Some(p) = fx.get(&format!("{name}_probs_chosen_row")) {
        // Only the revealed row was stored (f32); its draw replays from the rounded row.
        let probs = p.as_f64();
        let chosen = fx.tensor(&format!("{name}_chosen_pos"))?.as_i64();
        for (k, &seed) in seeds.iter().enumerate() {
            let pos = chosen[k] as usize;
            let row = &probs[k * v..(k + 1) * v];
            // Pad with rows before `pos` so the probe uses the row's own stream offset.
            let mut rows = vec![0.0; pos * v];
            rows.extend_from_slice(row);
            let ours = engine.race_probe(&rows, seed).await?;
            if ours[pos] == SKIPPED_ROW {
                skipped += 1;
                continue;
            }
            total += 1;
            if ours[pos] as i64 != sampled[k * b + pos] {
                mismatches += 1;
                first.get_or_insert(k);
                if near_tie(row, seed, pos * v, ours[pos], sampled[k * b + pos] as u32) {
                    explained += 1;
                }
            }
        }
    } else {
        report.fail(
            &format!("categorical/{name}"),
            "no probs tensor in golden.safetensors",
        );
        return Ok(());
    }
    let mut detail =
        format!("{total} draws, {mismatches} mismatched ({explained} at f64 near-ties)");
    if skipped > 0 {
        detail.push_str(&format!(
            ", {skipped} non-finite rows (t = 0 quirk) left to the trace replay"
        ));
    }
    report.results.push(CheckResult {
        case: fx.name.clone(),
        check: format!("categorical/{name}"),
        pass: mismatches == 0,
        max_err: mismatches as f64,
        tol: 0.0,
        first_divergence: first,
        detail,
    });
    Ok(())
}

/// Whether two race winners are within f32 precision of each other in exact f64 arithmetic.
fn near_tie(q: &[f64], seed: u64, offset: usize, a: u32, b: u32) -> bool {
    let score = |v: u32| {
        q[v as usize] / (1e-10 - (rng::uniform(seed, (offset + v as usize) as u64) + 1e-10).ln())
    };
    let (x, y) = (score(a), score(b));
    x.is_finite() && y.is_finite() && (x - y).abs() <= 1e-5 * x.abs().max(y.abs())
}

async fn replay<E: EngineProbes>(
    fx: &Fixture,
    engine: &mut E,
    trace: &TraceConfig,
) -> crate::Result<CheckResult> {
    let name = &trace.name;
    let (b, mask) = (fx.config.block_size, fx.config.mask_id());
    let seeds: Vec<u64> = fx
        .tensor(&format!("{name}_uniform_seed"))?
        .as_i64()
        .iter()
        .map(|&s| s as u64)
        .collect();
    let chosen: Vec<usize> = match fx.get(&format!("{name}_chosen_pos")) {
        Some(t) => t.as_i64().iter().map(|&p| p as usize).collect(),
        None => Vec::new(),
    };
    let x_after = fx.tensor(&format!("{name}_x_after"))?;
    let seqlen = x_after.shape[1];
    let x_after = x_after.as_i64();
    let sampled = fx.tensor(&format!("{name}_sampled"))?.as_i64();
    let model_called = fx.tensor(&format!("{name}_model_called"))?.as_i64();
    let kv_stored = fx.tensor(&format!("{name}_kv_stored"))?.as_i64();
    let golden_t = fx.get(&format!("{name}_t")).map(|t| t.as_f32());
    let golden_s = fx.get(&format!("{name}_s")).map(|t| t.as_f32());
    let final_ids = fx.tensor(&format!("{name}_final"))?.as_i64();
    let prompt: Vec<u32> = match fx.get(&format!("{name}_prompt")) {
        Some(p) => p.as_i64().iter().map(|&x| x as u32).collect(),
        None => vec![fx.bos()],
    };
    let steps = seeds.len();
    let opts = SamplingOptions {
        sampler: if trace.first_hitting {
            SamplerKind::FirstHitting {
                max_steps: trace.steps,
            }
        } else {
            SamplerKind::Posterior { steps: trace.steps }
        },
        nucleus_p: trace.nucleus_p,
        seed: trace.seed,
        t0_quirk: true,
        stop_at_eos: false,
        stop_on_low_entropy: false,
    };
    let mut gen = Generator::new(
        b,
        fx.config.model_length,
        mask,
        fx.bos(),
        prompt,
        trace.seqlen,
        opts,
    )?
    .with_replay(Replay { seeds, chosen });
    let (mut k, mut diverged, mut sampled_mismatch, mut structural) =
        (0usize, 0usize, 0usize, 0usize);
    let mut first: Option<usize> = None;
    loop {
        match gen.next(engine).await? {
            Event::Finished { .. } => break,
            Event::Step {
                tokens,
                draws,
                model_called: called,
                t,
                s,
                ..
            } => {
                if k >= steps {
                    return Ok(fail(
                        fx,
                        name,
                        format!("the replay ran more than the trace's {steps} steps"),
                    ));
                }
                if called as i64 != model_called[k]
                    || (!tokens.contains(&mask)) as i64 != kv_stored[k]
                {
                    structural += 1;
                }
                if let (Some(gt), Some(gs)) = (&golden_t, &golden_s) {
                    if !trace.first_hitting && (gt[k] != t || gs[k] != s) {
                        structural += 1;
                    }
                }
                if !sampled_matches(&draws, &sampled[k * b..(k + 1) * b]) {
                    sampled_mismatch += 1;
                }
                let ours = gen.tokens();
                let golden_row = &x_after[k * seqlen..(k + 1) * seqlen];
                let matches = ours.len() <= seqlen
                    && ours.iter().zip(golden_row).all(|(&a, &g)| a as i64 == g)
                    && golden_row[ours.len()..].iter().all(|&g| g == -1);
                if !matches {
                    diverged += 1;
                    first.get_or_insert(k);
                    // Resynchronise on the reference trajectory to count later divergences.
                    let start = ours.len() - b;
                    let golden_block: Vec<u32> = golden_row[start..start + b]
                        .iter()
                        .map(|&g| g as u32)
                        .collect();
                    gen.force_block(&golden_block);
                }
                k += 1;
            }
            _ => {}
        }
    }
    let final_ok = gen
        .committed()
        .iter()
        .map(|&t| t as i64)
        .eq(final_ids.iter().copied());
    let errors =
        diverged + sampled_mismatch + structural + usize::from(!final_ok) + usize::from(k != steps);
    Ok(CheckResult {
        case: fx.name.clone(),
        check: format!("trace/{name}"),
        pass: errors == 0,
        max_err: errors as f64,
        tol: 0.0,
        first_divergence: first,
        detail: format!(
            "{k}/{steps} steps, x_after mismatches {diverged}, sampled mismatches {sampled_mismatch}, structure mismatches {structural}, final {}",
            if final_ok { "exact" } else { "differs" }
        ),
    })
}

fn sampled_matches(draws: &[RowDraw], golden: &[i64]) -> bool {
    draws
        .iter()
        .all(|d| golden.get(d.row).is_some_and(|&g| g == d.token as i64))
}

fn fail(fx: &Fixture, trace: &str, detail: String) -> CheckResult {
    CheckResult {
        case: fx.name.clone(),
        check: format!("trace/{trace}"),
        pass: false,
        max_err: f64::INFINITY,
        tol: 0.0,
        first_divergence: None,
        detail,
    }
}
