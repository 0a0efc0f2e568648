//! A counting global allocator that enforces the fuzzing allocation bound.
//!
//! While a bound is armed, every request that would lift the live heap more than `limit` bytes
//! above where it stood when the input started is refused (the allocation returns null, so the
//! process aborts with "memory allocation of N bytes failed" unless the code handles it with
//! `try_reserve`) and recorded, so a header that claims a 100 GB tensor is caught at the
//! request, before anything of that size exists. The peak is measured for the report.
//!
//! Counts are process-wide: measure one input at a time, on one thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Install with `#[global_allocator] static A: CountingAlloc = CountingAlloc;` in the binary
/// (the libFuzzer driver, the replay test).
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static BASE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The largest request refused while armed (0: none).
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// Counts `n` more live bytes, or refuses them when the armed bound would be exceeded.
fn reserve(n: usize) -> bool {
    let live = LIVE.fetch_add(n, Relaxed).saturating_add(n);
    let (base, limit) = (BASE.load(Relaxed), LIMIT.load(Relaxed));
    if live.saturating_sub(base) > limit {
        LIVE.fetch_sub(n, Relaxed);
        REFUSED.fetch_max(n, Relaxed);
        // Formatting into unbuffered stderr allocates nothing.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "bd3lm-fuzz: allocation bound exceeded: refused a request of {n} bytes ({} bytes live above the input's start, bound {limit})",
            (live - n).saturating_sub(base)
        );
        return false;
    }
    PEAK.fetch_max(live, Relaxed);
    true
}

fn release(n: usize) {
    LIVE.fetch_sub(n, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only the byte counts are tracked, and
// a refused request returns null, which `GlobalAlloc` allows.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        // A growing realloc may copy: old and new blocks are both live for a moment.
        if new_size > old && !reserve(new_size) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if new_size > old {
            release(if p.is_null() { new_size } else { old });
        } else if !p.is_null() {
            release(old - new_size);
        }
        p
    }
}

/// What one measured call allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// Highest live heap above the level at the start of the call, in bytes.
    pub peak_bytes: usize,
    /// The bound the call ran under.
    pub limit: usize,
    /// The largest request refused for exceeding the bound, if any.
    pub refused: Option<usize>,
}

impl Measurement {
    pub fn within_bound(&self) -> bool {
        self.refused.is_none() && self.peak_bytes <= self.limit
    }

    /// Peak as a fraction of the bound (1.0 = exactly at the bound).
    pub fn ratio(&self) -> f64 {
        self.peak_bytes as f64 / self.limit as f64
    }
}

/// Whether [`CountingAlloc`] is this process's global allocator (otherwise every measurement
/// would read zero and prove nothing).
pub fn installed() -> bool {
    let before = LIVE.load(Relaxed);
    let probe = std::hint::black_box(vec![0u8; 4096]);
    let during = LIVE.load(Relaxed);
    drop(probe);
    during >= before.saturating_add(4096)
}

/// Lifts the bound (a panic hook calls this before reporting).
pub fn disarm() {
    LIMIT.store(usize::MAX, Relaxed);
}

/// Disarms the bound when the measured call returns or unwinds.
struct Disarm;

impl Drop for Disarm {
    fn drop(&mut self) {
        disarm();
    }
}

/// Runs `f` with the live heap bounded to `limit` bytes above its current level.
///
/// # Panics
/// If [`CountingAlloc`] is not the global allocator.
pub fn measure<R>(limit: usize, f: impl FnOnce() -> R) -> (R, Measurement) {
    assert!(
        installed(),
        "bd3lm_fuzz::alloc::CountingAlloc must be the #[global_allocator]"
    );
    let base = LIVE.load(Relaxed);
    BASE.store(base, Relaxed);
    PEAK.store(base, Relaxed);
    REFUSED.store(0, Relaxed);
    LIMIT.store(limit, Relaxed);
    let guard = Disarm;
    let out = f();
    drop(guard);
    let refused = REFUSED.swap(0, Relaxed);
    let m = Measurement {
        peak_bytes: PEAK.load(Relaxed).saturating_sub(base),
        limit,
        refused: (refused > 0).then_some(refused),
    };
    (out, m)
}
