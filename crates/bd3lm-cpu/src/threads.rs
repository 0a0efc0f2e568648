//! The engine's threads: the caller and `--threads N` - 1 spinning workers natively
//! ([`crate::spin_pool`]), the calling thread alone on wasm32 (the page runs the engine inside
//! one Web Worker per party of a split, `crate::split`).
//!
//! Work is split by output (each output is computed whole by one thread, in an order fixed
//! by the kernel), so results are identical for every thread count.

use crate::split::SplitMatmul;
use bd3lm::{Error, Result};

/// The base of a slice whose disjoint chunks the pool's threads write.
#[cfg(not(target_arch = "wasm32"))]
struct SharedSlice<T>(*mut T);

#[cfg(not(target_arch = "wasm32"))]
impl<T> SharedSlice<T> {
    fn at(&self, i: usize) -> *mut T {
        // SAFETY: callers pass offsets inside the slice.
        unsafe { self.0.add(i) }
    }
}

// SAFETY: each chunk is handed to one thread only (`Pool::for_each_chunk`).
#[cfg(not(target_arch = "wasm32"))]
unsafe impl<T: Send> Sync for SharedSlice<T> {}

pub struct Pool {
    threads: usize,
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<crate::spin_pool::SpinPool>,
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
            let pool =
                if threads > 1 {
                    Some(crate::spin_pool::SpinPool::new(threads).map_err(|e| {
                        Error::Backend(format!("cannot start {threads} threads: {e}"))
                    })?)
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
            let len = data.len();
            let base = SharedSlice(data.as_mut_ptr());
            pool.for_each(len.div_ceil(chunk_len), &|i| {
                let at = i * chunk_len;
                // SAFETY: chunk i alone covers data[at..at + n], inside `data`, which this
                // call borrows mutably until every chunk has returned.
                let c =
                    unsafe { std::slice::from_raw_parts_mut(base.at(at), chunk_len.min(len - at)) };
                f(i, c)
            });
            return;
        }
        for (i, c) in data.chunks_mut(chunk_len).enumerate() {
            f(i, c);
        }
    }
}
