//! The engine's threads: a rayon pool of `--threads N` workers natively, the calling thread
//! alone on wasm32 (the page runs the engine inside one Web Worker).
//!
//! Work is split by output (each output is computed whole by one thread, in an order fixed
//! by the kernel), so results are identical for every thread count.

use crate::split::SplitMatmul;
use bd3lm::{Error, Result};

pub struct Pool {
    threads: usize,
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<rayon::ThreadPool>,
    /// Other parties computing the rest of each split matrix (`crate::split`).
    split: Option<Box<dyn SplitMatmul>>,
}

impl Pool {
    /// `None`: every core the OS offers this process.
    pub fn new(threads: Option<usize>) -> Result<Pool> {
        let threads = match threads {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "the CPU engine needs at least one thread".into(),
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Ok(Pool {
                threads: 1,
                split: None,
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let pool = if threads > 1 {
                Some(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(|i| format!("bd3lm-cpu-{i}"))
                        .build()
                        .map_err(|e| {
                            Error::Backend(format!("cannot start {threads} threads: {e}"))
                        })?,
                )
            } else {
                None
            };
            Ok(Pool {
                threads,
                pool,
                split: None,
            })
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Splits every matrix `split` knows with other parties ([`crate::split`]).
    pub fn set_split(&mut self, split: Box<dyn SplitMatmul>) {
        self.split = Some(split);
    }

    pub fn split(&self) -> Option<&dyn SplitMatmul> {
        self.split.as_deref()
    }

    /// Runs `f` on one of the pool's threads, so the parallel loops inside it start there
    /// (stealing between workers) instead of waking the pool from outside once per loop,
    /// which costs each loop a pair of context switches.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// The calling thread is the only one on wasm32.
    #[cfg(target_arch = "wasm32")]
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Calls `f(i, chunk)` for every `chunk_len`-sized chunk `i` of `data`, in parallel.
    pub fn for_each_chunk<T: Send>(
        &self,
        data: &mut [T],
        chunk_len: usize,
        f: impl Fn(usize, &mut [T]) + Sync + Send,
    ) {
        let chunk_len = chunk_len.max(1);
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(pool) = &self.pool {
            use rayon::prelude::*;
            pool.install(|| {
                data.par_chunks_mut(chunk_len)
                    .enumerate()
                    .for_each(|(i, c)| f(i, c))
            });
            return;
        }
        for (i, c) in data.chunks_mut(chunk_len).enumerate() {
            f(i, c);
        }
    }
}
