//! The machine's streaming read bandwidth, measured: what a step that streams its weights
//! from memory is bound by (`bd3lm bench` divides each figure's weight traffic by it).

use std::hint::black_box;
use std::time::Instant;

/// Sum of `data` with eight independent lanes (so the loop is limited by loads, not adds).
fn sum(data: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let chunks = data.chunks_exact(8);
    let tail: u64 = chunks.remainder().iter().fold(0, |a, &b| a.wrapping_add(b));
    for c in chunks {
        for j in 0..8 {
            lanes[j] = lanes[j].wrapping_add(c[j]);
        }
    }
    lanes.iter().fold(tail, |a, &b| a.wrapping_add(b))
}

/// A buffer of `bytes` (rounded down to whole 64-byte lines) written once, so its pages are
/// resident before anything is timed.
pub struct ReadBuffer {
    data: Vec<u64>,
}

impl ReadBuffer {
    pub fn new(bytes: usize) -> ReadBuffer {
        let words = (bytes / 64).max(1) * 8;
        ReadBuffer {
            data: (0..words as u64).collect(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.data.len() * 8
    }

    /// Bytes per second read by `threads` threads, each summing its own contiguous part of the
    /// buffer: the best of `passes` passes (after one untimed pass).
    pub fn read_bytes_per_s(&self, threads: usize, passes: usize) -> f64 {
        let threads = threads.max(1);
        let part = self.data.len().div_ceil(threads).div_ceil(8) * 8;
        let mut best = f64::INFINITY;
        for pass in 0..=passes.max(1) {
            let started = Instant::now();
            std::thread::scope(|s| {
                for chunk in self.data.chunks(part) {
                    s.spawn(move || black_box(sum(black_box(chunk))));
                }
            });
            if pass > 0 {
                best = best.min(started.elapsed().as_secs_f64());
            }
        }
        self.bytes() as f64 / best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_word_and_reports_a_rate() {
        let words: Vec<u64> = (1..=20).collect();
        assert_eq!(sum(&words), 210);
        let buf = ReadBuffer::new(1 << 20);
        assert_eq!(buf.bytes(), 1 << 20);
        let rate = buf.read_bytes_per_s(2, 1);
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
    }
}
