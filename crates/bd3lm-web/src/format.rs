//! Human-readable numbers for the page: sizes in decimal MB (as the manifest's 64 MB shard
//! limit is decimal), rates, durations and parameter counts.

/// `1234567` -> `"1.2 MB"`; small sizes in kB or bytes.
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Bytes per second as `"3.4 MB/s"`.
pub fn rate(bytes_per_second: f64) -> String {
    if !bytes_per_second.is_finite() || bytes_per_second <= 0.0 {
        return "-".to_string();
    }
    format!("{:.1} MB/s", bytes_per_second / 1e6)
}

/// Seconds as `"42 s"`, `"3 min 05 s"` or `"1 h 02 min"`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_string();
    }
    let s = seconds.round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// Milliseconds as `"850 ms"` or `"2.4 s"`.
pub fn millis(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        "-".to_string()
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// `6162945` -> `"6.16 M"`.
pub fn count(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} k", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// A per-second figure with a sensible number of digits (`"-"` before there is any data).
pub fn per_second(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() && v >= 100.0 => format!("{v:.0}"),
        Some(v) if v.is_finite() && v >= 10.0 => format!("{v:.1}"),
        Some(v) if v.is_finite() => format!("{v:.2}"),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_decimal() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64_000_000), "64.0 MB");
        assert_eq!(bytes(6_612_345), "6.6 MB");
        assert_eq!(bytes(1_700_000_000), "1.70 GB");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(4.4), "4 s");
        assert_eq!(duration(125.0), "2 min 05 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
        assert_eq!(duration(f64::INFINITY), "-");
        assert_eq!(millis(850.2), "850 ms");
        assert_eq!(millis(2400.0), "2.4 s");
    }

    #[test]
    fn rates_and_counts() {
        assert_eq!(rate(3_400_000.0), "3.4 MB/s");
        assert_eq!(rate(0.0), "-");
        assert_eq!(count(6_162_945), "6.16 M");
        assert_eq!(count(169_600_000), "169.60 M");
        assert_eq!(per_second(None), "-");
        assert_eq!(per_second(Some(123.4)), "123");
        assert_eq!(per_second(Some(12.34)), "12.3");
        assert_eq!(per_second(Some(1.234)), "1.23");
    }
}
