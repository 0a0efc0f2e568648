//! Live generation statistics. Time is "busy" time: wall time since start minus the pauses
//! the user asked for between steps (the pace control), so the figures describe the engine.

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationStats {
    /// Model calls (denoising forwards and commit passes) in this run.
    pub forwards: u64,
    /// Tokens written by the model in this run (prompt excluded).
    pub tokens: u64,
    /// Busy milliseconds so far.
    pub busy_ms: f64,
    /// Busy milliseconds from start to the first generated block being committed.
    pub first_block_ms: Option<f64>,
    /// Denoising steps taken (first hitting: one per token; posterior: the grid points used).
    pub steps: u64,
    /// Longest single `Generator::next` call, in ms (what the page blocks for at most).
    pub longest_step_ms: f64,
    /// Most tokens revealed by one denoising step (1 for first hitting; more for the
    /// parallel samplers and the posterior grid).
    pub max_revealed_per_step: u64,
}

impl GenerationStats {
    fn seconds(&self) -> Option<f64> {
        (self.busy_ms > 0.0).then_some(self.busy_ms / 1000.0)
    }

    pub fn forwards_per_second(&self) -> Option<f64> {
        Some(self.forwards as f64 / self.seconds()?)
    }

    pub fn tokens_per_second(&self) -> Option<f64> {
        Some(self.tokens as f64 / self.seconds()?)
    }

    pub fn forwards_per_token(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.forwards as f64 / self.tokens as f64)
    }
}

/// Accumulates busy time across steps with the deliberate pauses left out.
#[derive(Debug, Clone, Default)]
pub struct BusyClock {
    started_ms: f64,
    paused_ms: f64,
}

impl BusyClock {
    pub fn start(now_ms: f64) -> Self {
        BusyClock {
            started_ms: now_ms,
            paused_ms: 0.0,
        }
    }

    pub fn add_pause(&mut self, ms: f64) {
        self.paused_ms += ms.max(0.0);
    }

    pub fn busy_ms(&self, now_ms: f64) -> f64 {
        (now_ms - self.started_ms - self.paused_ms).max(0.0)
    }
}

/// Durations of every `Generator::next` call of a run: how long the page was blocked each time.
#[derive(Debug, Clone, Default)]
pub struct StepTimes {
    millis: Vec<f32>,
}

impl StepTimes {
    pub fn push(&mut self, ms: f64) {
        self.millis.push(ms as f32);
    }

    /// The `q` quantile (0..=1, nearest rank), or `None` before any step.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.millis.is_empty() {
            return None;
        }
        let mut sorted = self.millis.clone();
        sorted.sort_by(f32::total_cmp);
        let rank =
            ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1] as f64)
    }

    /// `"379 steps: median 24 ms, p99 41 ms, max 218 ms, 1 over 100 ms"`.
    pub fn summary(&self, limit_ms: f64) -> String {
        let q = |q| {
            self.quantile(q)
                .map(crate::format::millis)
                .unwrap_or_else(|| "-".into())
        };
        let over = self.millis.iter().filter(|&&m| m as f64 > limit_ms).count();
        format!(
            "{} steps: median {}, p99 {}, max {}, {over} over {limit_ms:.0} ms",
            self.millis.len(),
            q(0.5),
            q(0.99),
            q(1.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_use_busy_time() {
        let mut clock = BusyClock::start(1000.0);
        clock.add_pause(500.0);
        let stats = GenerationStats {
            forwards: 50,
            tokens: 40,
            busy_ms: clock.busy_ms(3500.0),
            ..Default::default()
        };
        assert_eq!(stats.busy_ms, 2000.0);
        assert_eq!(stats.forwards_per_second(), Some(25.0));
        assert_eq!(stats.tokens_per_second(), Some(20.0));
        assert_eq!(stats.forwards_per_token(), Some(1.25));
    }

    #[test]
    fn step_quantiles_use_nearest_rank() {
        let mut times = StepTimes::default();
        assert_eq!(times.quantile(0.5), None);
        for ms in [30.0, 10.0, 20.0, 40.0, 250.0] {
            times.push(ms);
        }
        assert_eq!(times.quantile(0.5), Some(30.0));
        assert_eq!(times.quantile(0.0), Some(10.0));
        assert_eq!(times.quantile(1.0), Some(250.0));
        assert_eq!(
            times.summary(100.0),
            "5 steps: median 30 ms, p99 250 ms, max 250 ms, 1 over 100 ms"
        );
    }

    #[test]
    fn nothing_to_report_before_work() {
        let stats = GenerationStats::default();
        assert_eq!(stats.forwards_per_second(), None);
        assert_eq!(stats.forwards_per_token(), None);
    }
}
