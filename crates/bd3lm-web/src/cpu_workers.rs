//! How many Web Workers the page's CPU engine runs on (issue 19): by default one per core
//! (`navigator.hardwareConcurrency`, at most [`DEFAULT_MAX_WORKERS`]), `?workers=N` overrides
//! it; several workers share memory, so they need a cross-origin isolated page, and otherwise
//! the engine runs on one worker and the page says why.

/// Default cap: past it a worker's share of each matrix gets small next to the cost of
/// waking it (and few machines have more memory bandwidth to give).
pub const DEFAULT_MAX_WORKERS: usize = 8;
/// Most workers `?workers=N` may ask for.
pub const MAX_REQUESTED_WORKERS: usize = 16;

/// The plan for one page: how many workers, and what the page says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuWorkers {
    pub count: usize,
    /// Words for the page (empty when there is nothing to explain).
    pub note: String,
}

impl CpuWorkers {
    /// `requested`: the `?workers=` value; `cores`: `navigator.hardwareConcurrency` (0 when
    /// unknown); `isolated`: whether the page is cross-origin isolated (a
    /// `SharedArrayBuffer` is offered).
    pub fn plan(requested: Option<&str>, cores: usize, isolated: bool) -> CpuWorkers {
        let mut note = String::new();
        let wanted = match requested.map(|r| r.trim().parse::<usize>()) {
            Some(Ok(n)) if n >= 1 => n.min(MAX_REQUESTED_WORKERS),
            Some(_) => {
                note = format!(
                    "?workers={} is not a number of workers (1 to {MAX_REQUESTED_WORKERS}); ",
                    requested.unwrap_or_default()
                );
                cores.clamp(1, DEFAULT_MAX_WORKERS)
            }
            None => cores.clamp(1, DEFAULT_MAX_WORKERS),
        };
        if wanted > 1 && !isolated {
            note.push_str(&format!(
                "The CPU engine runs on one Web Worker, not {wanted}: workers share the model's \
                 activations through shared memory, which browsers offer only to a cross-origin \
                 isolated page (its host must send the headers Cross-Origin-Opener-Policy: \
                 same-origin and Cross-Origin-Embedder-Policy: require-corp; see docs/web.md)."
            ));
            return CpuWorkers { count: 1, note };
        }
        if !note.is_empty() {
            note.push_str(&format!("using {wanted}."));
        }
        CpuWorkers {
            count: wanted,
            note,
        }
    }

    /// "one Web Worker" / "N Web Workers".
    pub fn words(&self) -> String {
        match self.count {
            1 => "one Web Worker".to_string(),
            n => format!("{n} Web Workers"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_per_core_capped_and_overridden() {
        assert_eq!(CpuWorkers::plan(None, 4, true).count, 4);
        assert_eq!(CpuWorkers::plan(None, 64, true).count, DEFAULT_MAX_WORKERS);
        assert_eq!(CpuWorkers::plan(None, 0, true).count, 1);
        assert_eq!(CpuWorkers::plan(Some("2"), 8, true).count, 2);
        assert_eq!(
            CpuWorkers::plan(Some("99"), 8, true).count,
            MAX_REQUESTED_WORKERS
        );
        let bad = CpuWorkers::plan(Some("many"), 2, true);
        assert_eq!(bad.count, 2);
        assert!(bad.note.contains("?workers=many"), "{}", bad.note);
        assert!(CpuWorkers::plan(Some("1"), 8, false).note.is_empty());
    }

    #[test]
    fn without_isolation_one_worker_and_the_page_says_why() {
        let plan = CpuWorkers::plan(Some("4"), 8, false);
        assert_eq!(plan.count, 1);
        assert!(plan.note.contains("cross-origin isolated"), "{}", plan.note);
        assert!(plan.note.contains("Cross-Origin-Embedder-Policy"));
    }
}
