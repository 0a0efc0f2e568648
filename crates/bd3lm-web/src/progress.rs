//! The one total progress bar of a package download: bytes done (from the cache or the
//! network), throughput measured on network bytes only, and the time left at that rate.

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DownloadProgress {
    /// All bytes the package needs (manifest `download_bytes`).
    pub total_bytes: u64,
    /// Bytes already in hand, from the cache or the network.
    pub done_bytes: u64,
    /// Of those, bytes that came over the network in this load.
    pub network_bytes: u64,
    /// Milliseconds spent waiting on the network so far in this load.
    pub network_ms: f64,
    /// What the loader is doing right now, in words (file name and step).
    pub activity: String,
}

impl DownloadProgress {
    pub fn new(total_bytes: u64) -> Self {
        DownloadProgress {
            total_bytes,
            ..Default::default()
        }
    }

    /// Share done, 0..=1.
    pub fn fraction(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        (self.done_bytes as f64 / self.total_bytes as f64).clamp(0.0, 1.0)
    }

    /// Network throughput in bytes per second, once there is enough data to say.
    pub fn bytes_per_second(&self) -> Option<f64> {
        (self.network_ms >= 200.0 && self.network_bytes > 0)
            .then(|| self.network_bytes as f64 / (self.network_ms / 1000.0))
    }

    /// Seconds left at the current rate.
    pub fn eta_seconds(&self) -> Option<f64> {
        let rate = self.bytes_per_second()?;
        Some(self.total_bytes.saturating_sub(self.done_bytes) as f64 / rate)
    }

    /// `"3.1 MB of 6.6 MB · 2.0 MB/s · 2 s left"`.
    pub fn summary(&self) -> String {
        use crate::format;
        let mut s = format!(
            "{} of {}",
            format::bytes(self.done_bytes),
            format::bytes(self.total_bytes)
        );
        if let Some(rate) = self.bytes_per_second() {
            s.push_str(&format!(" · {}", format::rate(rate)));
        }
        if self.done_bytes < self.total_bytes {
            if let Some(eta) = self.eta_seconds() {
                s.push_str(&format!(" · {} left", format::duration(eta)));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_come_from_network_bytes_only() {
        let mut p = DownloadProgress::new(10_000_000);
        // 4 MB from the cache: done, but no rate yet.
        p.done_bytes = 4_000_000;
        assert_eq!(p.bytes_per_second(), None);
        assert_eq!(p.eta_seconds(), None);
        assert!((p.fraction() - 0.4).abs() < 1e-12);
        // Then 2 MB over the network in one second.
        p.done_bytes += 2_000_000;
        p.network_bytes = 2_000_000;
        p.network_ms = 1000.0;
        assert_eq!(p.bytes_per_second(), Some(2_000_000.0));
        assert_eq!(p.eta_seconds(), Some(2.0));
        assert_eq!(p.summary(), "6.0 MB of 10.0 MB · 2.0 MB/s · 2 s left");
    }

    #[test]
    fn empty_package_does_not_divide_by_zero() {
        let p = DownloadProgress::new(0);
        assert_eq!(p.fraction(), 0.0);
        assert_eq!(p.summary(), "0 B of 0 B");
    }
}
