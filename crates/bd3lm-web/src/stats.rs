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
    fn nothing_to_report_before_work() {
        let stats = GenerationStats::default();
        assert_eq!(stats.forwards_per_second(), None);
        assert_eq!(stats.forwards_per_token(), None);
    }
}
