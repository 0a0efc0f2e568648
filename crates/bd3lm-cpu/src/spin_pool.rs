//! The native worker threads behind [`crate::threads::Pool`]: the calling thread and
//! `threads - 1` workers share each parallel loop, claiming its chunks one at a time.
//!
//! Why not rayon: a step runs about 70 parallel loops a few hundred microseconds apart, and
//! rayon's workers fall asleep between them, so every loop paid a futex wake-up (an
//! inter-processor interrupt, costly in a virtual machine): 11–14 % of all samples of a
//! 2-thread step were in `try_to_wake_up`. Here a worker spins for [`SPIN`] after a loop
//! before it parks, which spans the gaps inside a step (LayerNorms, the activations'
//! quantisation) and wakes it once per step at most.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_micros(300);

/// A loop's body, its lifetime erased: only called while the loop that published it waits.
#[derive(Clone, Copy)]
struct Job {
    body: *const (dyn Fn(usize) + Sync),
    chunks: u32,
    generation: u32,
}

// SAFETY: the body is `Sync` and outlives every call (see `SpinPool::for_each`).
unsafe impl Send for Job {}

struct Shared {
    job: Mutex<Option<Job>>,
    /// `generation << 32 | next unclaimed chunk`: a claim succeeds only for the current loop.
    claim: AtomicU64,
    /// Chunks of the current loop finished (or panicked).
    done: AtomicUsize,
    panicked: AtomicBool,
    generation: AtomicU64,
    sleeping: AtomicUsize,
    /// A loop is in flight: a nested or concurrent loop runs serially instead of replacing it
    /// (which would leave the first one's chunks unclaimable: a hang).
    busy: AtomicBool,
    park: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Shared {
    /// Claims and runs chunks of `job` until none is left.
    fn work(&self, job: Job) {
        loop {
            let v = self.claim.load(SeqCst);
            let (generation, next) = ((v >> 32) as u32, v as u32);
            if generation != job.generation || next >= job.chunks {
                return;
            }
            if self
                .claim
                .compare_exchange(v, v + 1, SeqCst, SeqCst)
                .is_err()
            {
                continue;
            }
            // SAFETY: a successful claim means the loop is unfinished (its `done` count
            // lacks this chunk), so its caller is still waiting and the body alive.
            let body = unsafe { &*job.body };
            if catch_unwind(AssertUnwindSafe(|| body(next as usize))).is_err() {
                self.panicked.store(true, SeqCst);
            }
            self.done.fetch_add(1, SeqCst);
        }
    }

    fn worker(&self) {
        let mut seen = 0u64;
        loop {
            let started = Instant::now();
            let mut spins = 0u32;
            let generation = loop {
                if self.stop.load(SeqCst) {
                    return;
                }
                let g = self.generation.load(SeqCst);
                if g != seen {
                    break g;
                }
                spins = spins.wrapping_add(1);
                if !spins.is_multiple_of(64) || started.elapsed() < SPIN {
                    std::hint::spin_loop();
                    continue;
                }
                let mut guard = self.park.lock().unwrap_or_else(|e| e.into_inner());
                self.sleeping.fetch_add(1, SeqCst);
                while self.generation.load(SeqCst) == seen && !self.stop.load(SeqCst) {
                    guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                self.sleeping.fetch_sub(1, SeqCst);
            };
            seen = generation;
            let job = *self.job.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(job) = job {
                self.work(job);
            }
        }
    }
}

pub struct SpinPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl SpinPool {
    /// The caller and `threads - 1` workers.
    pub fn new(threads: usize) -> std::io::Result<SpinPool> {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            sleeping: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            park: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut pool = SpinPool {
            shared,
            workers: Vec::new(),
        };
        for i in 1..threads {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("bd3lm-cpu-{i}"))
                .spawn(move || shared.worker())?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Calls `body(i)` for every `i < chunks`, each once, on the caller and the workers;
    /// returns when all have returned (a panic in any is resumed here).
    pub fn for_each(&self, chunks: usize, body: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        if s.busy.swap(true, SeqCst) {
            (0..chunks).for_each(body);
            return;
        }
        // Cleared however this call ends (a panic included).
        struct Idle<'a>(&'a AtomicBool);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                self.0.store(false, SeqCst);
            }
        }
        let _idle = Idle(&s.busy);
        let chunks = u32::try_from(chunks).expect("fewer than 2^32 chunks");
        let job = {
            let mut slot = s.job.lock().unwrap_or_else(|e| e.into_inner());
            let generation = (s.generation.load(SeqCst) + 1) as u32;
            // SAFETY (of the erased lifetime): workers call the body only after claiming a
            // chunk of this loop, and this function returns only once every chunk is done.
            let body: *const (dyn Fn(usize) + Sync + '_) = body;
            let body = unsafe {
                std::mem::transmute::<
                    *const (dyn Fn(usize) + Sync + '_),
                    *const (dyn Fn(usize) + Sync + 'static),
                >(body)
            };
            let job = Job {
                body,
                chunks,
                generation,
            };
            *slot = Some(job);
            s.done.store(0, SeqCst);
            s.claim.store(u64::from(generation) << 32, SeqCst);
            s.generation.fetch_add(1, SeqCst);
            job
        };
        if s.sleeping.load(SeqCst) > 0 {
            let _guard = s.park.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        s.work(job);
        let mut spins = 0u32;
        while s.done.load(SeqCst) < chunks as usize {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if s.panicked.swap(false, SeqCst) {
            panic!("a CPU engine worker panicked");
        }
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        {
            let _guard = self.shared.park.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_chunk_runs_once_per_loop() {
        for threads in [1, 2, 3] {
            let pool = SpinPool::new(threads).unwrap();
            for round in 0..2_000usize {
                let chunks = round % 37;
                let hits: Vec<AtomicU32> = (0..chunks).map(|_| AtomicU32::new(0)).collect();
                pool.for_each(chunks, &|i| {
                    hits[i].fetch_add(1, SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "round {round}");
                if round % 500 == 0 {
                    // Long enough for the workers to park: the next loop must wake them.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    #[test]
    fn a_loop_inside_a_loop_runs_serially_instead_of_hanging() {
        let pool = SpinPool::new(2).unwrap();
        let hits: Vec<AtomicU32> = (0..64).map(|_| AtomicU32::new(0)).collect();
        pool.for_each(8, &|i| {
            pool.for_each(8, &|j| {
                hits[i * 8 + j].fetch_add(1, SeqCst);
            });
        });
        assert!(hits.iter().all(|h| h.load(SeqCst) == 1));
    }

    #[test]
    fn a_panicking_chunk_panics_the_caller_and_the_pool_goes_on() {
        let pool = SpinPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.for_each(8, &|i| assert!(i != 5, "planted"));
        }));
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        pool.for_each(8, &|i| {
            sum.fetch_add(i, SeqCst);
        });
        assert_eq!(sum.load(SeqCst), 28);
    }
}
