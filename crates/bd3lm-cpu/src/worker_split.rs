//! The page's CPU engine on several Web Workers (wasm32 only): each matrix split by outputs
//! ([`crate::split`]), the activations and outputs passed through one `SharedArrayBuffer`
//! that the page hands every worker, the workers woken with `Atomics.wait`/`notify`.
//!
//! Worker 0 runs the engine; at each split matmul [`SharedSplit`] writes the activations,
//! bumps the job counter and computes its own outputs while every other worker
//! ([`PartServer`], blocked in `Atomics.wait` between jobs) computes its slice into its own
//! region of the output area; worker 0 then waits for each one's done counter and copies its
//! columns in. The wasm memories stay unshared (stable Rust has no wasm threads): only these
//! copies cross, a few hundred KB per matmul. Needs cross-origin isolation (docs/web.md).

use crate::kernels::Simd;
use crate::matmul::{self, Epilogue, MatmulScratch};
use crate::split::{self, part_range, SplitMatmul, SplitMatrix};
use crate::threads::Pool;
use bd3lm::quant::Matrix;
use bd3lm::{Config, Weights};
use js_sys::{Atomics, Float32Array, Int32Array, SharedArrayBuffer};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Control words (`Int32Array` indices) at the start of the shared buffer.
const GO: u32 = 0;
const INDEX: u32 = 1;
const ROWS: u32 = 2;
/// Set (by the page) when a worker died: every wait gives up.
pub const ABORT: u32 = 3;
/// `DONE + part`: the last job part `part` finished.
const DONE: u32 = 8;
const HEADER_BYTES: u32 = 256;
/// Most workers the control words have room for.
pub const MAX_WORKERS: usize = (HEADER_BYTES / 4 - DONE) as usize;
/// What a failed load reads as (no job index is negative: a worker given one stops).
const STOP: i32 = -1;
/// How long a wait sleeps before it looks at [`ABORT`] again (ms).
const WAIT_SLICE_MS: f64 = 500.0;

/// Rows, inputs and outputs of the largest matmul a call runs (a folded store pass doubles
/// the rows).
fn extents(cfg: &Config) -> (usize, usize, usize) {
    let h = cfg.hidden_dim;
    (2 * cfg.block_size, 4 * h, cfg.vocab_size.max(4 * h))
}

/// Bytes of the shared buffer for `cfg`: the control words, then the activations
/// (`[rows, k]` f32), then the outputs (`[rows, outputs]` f32, part `p`'s slice at
/// `rows * start_p`, contiguous).
pub fn shared_bytes(cfg: &Config) -> u32 {
    let (rows, k, n) = extents(cfg);
    HEADER_BYTES + 4 * (rows * k + rows * n) as u32
}

struct Views {
    control: Int32Array,
    x: Float32Array,
    out: Float32Array,
}

impl Views {
    fn new(buffer: &SharedArrayBuffer, cfg: &Config) -> Views {
        let (rows, k, n) = extents(cfg);
        let x_len = (rows * k) as u32;
        Views {
            control: Int32Array::new_with_byte_offset_and_length(buffer, 0, HEADER_BYTES / 4),
            x: Float32Array::new_with_byte_offset_and_length(buffer, HEADER_BYTES, x_len),
            out: Float32Array::new_with_byte_offset_and_length(
                buffer,
                HEADER_BYTES + 4 * x_len,
                (rows * n) as u32,
            ),
        }
    }

    fn load(&self, word: u32) -> i32 {
        Atomics::load(&self.control, word).unwrap_or(STOP)
    }

    fn aborted(&self) -> bool {
        self.load(ABORT) != 0
    }

    /// Sets `word` and wakes whoever waits on it.
    fn signal(&self, word: u32, value: i32) {
        let _ = Atomics::store(&self.control, word, value);
        let _ = Atomics::notify(&self.control, word);
    }

    /// Sleeps until `word` differs from `seen` (or the page aborts); gives its new value.
    fn wait_change(&self, word: u32, seen: i32) -> Option<i32> {
        loop {
            let v = self.load(word);
            if v != seen {
                return Some(v);
            }
            if self.aborted() {
                return None;
            }
            let _ = Atomics::wait_with_timeout(&self.control, word, seen, WAIT_SLICE_MS);
        }
    }
}

/// Marks the shared buffer aborted (a worker died), waking every waiter.
pub fn abort(buffer: &SharedArrayBuffer) {
    let control = Int32Array::new_with_byte_offset_and_length(buffer, 0, HEADER_BYTES / 4);
    let _ = Atomics::store(&control, ABORT, 1);
    for word in 0..HEADER_BYTES / 4 {
        let _ = Atomics::notify(&control, word);
    }
}

/// Worker 0's hook: hands each split matmul to the other workers and gathers their columns.
pub struct SharedSplit {
    views: Views,
    parts: usize,
    /// Addresses of worker 0's split matrices, by index.
    addresses: Vec<usize>,
    /// Outputs of each whole split matrix, by index.
    outputs: Vec<usize>,
    job: Cell<i32>,
    columns: RefCell<Vec<f32>>,
    failed: Rc<Cell<bool>>,
}

impl SharedSplit {
    /// `weights`: worker 0's (its slices of the split matrices, behind the engine's `Arc`).
    /// `failed` is set when another worker does not answer.
    pub fn new(
        buffer: &SharedArrayBuffer,
        weights: &Weights,
        parts: usize,
        failed: Rc<Cell<bool>>,
    ) -> SharedSplit {
        let cfg = &weights.config;
        SharedSplit {
            views: Views::new(buffer, cfg),
            parts,
            addresses: split::matrix_addresses(weights),
            outputs: split::split_outputs(cfg),
            job: Cell::new(0),
            columns: RefCell::new(Vec::new()),
            failed,
        }
    }
}

impl SplitMatmul for SharedSplit {
    fn locate(&self, w: &Matrix) -> Option<SplitMatrix> {
        let at = w as *const Matrix as usize;
        let index = self.addresses.iter().position(|&a| a == at)?;
        Some(SplitMatrix {
            index,
            outputs: self.outputs[index],
            local_start: 0,
        })
    }

    fn start(&self, m: SplitMatrix, x: &[f32], rows: usize) {
        self.views.x.subarray(0, x.len() as u32).copy_from(x);
        let _ = Atomics::store(&self.views.control, INDEX, m.index as i32);
        let _ = Atomics::store(&self.views.control, ROWS, rows as i32);
        self.job.set(self.job.get() + 1);
        self.views.signal(GO, self.job.get());
    }

    fn finish(&self, m: SplitMatrix, rows: usize, out: &mut [f32]) {
        let job = self.job.get();
        let mut columns = self.columns.borrow_mut();
        for part in 1..self.parts {
            let done = DONE + part as u32;
            let mut seen = self.views.load(done);
            while seen != job {
                match self.views.wait_change(done, seen) {
                    Some(v) => seen = v,
                    None => {
                        self.failed.set(true);
                        return;
                    }
                }
            }
            let range = part_range(m.outputs, part, self.parts);
            let width = range.len();
            let at = (rows * range.start) as u32;
            columns.resize(rows * width, 0.0);
            self.views
                .out
                .subarray(at, at + (rows * width) as u32)
                .copy_to(&mut columns[..]);
            for r in 0..rows {
                let dst = r * m.outputs + range.start;
                out[dst..dst + width].copy_from_slice(&columns[r * width..(r + 1) * width]);
            }
        }
    }
}

/// Another worker's side: its slices, and the loop that computes them on demand.
pub struct PartServer {
    views: Views,
    part: usize,
    /// Per split matrix: its first output in the whole, and this worker's slice.
    slices: Vec<(usize, Matrix)>,
}

impl PartServer {
    pub fn new(
        buffer: &SharedArrayBuffer,
        cfg: &Config,
        part: usize,
        slices: Vec<(usize, Matrix)>,
    ) -> PartServer {
        PartServer {
            views: Views::new(buffer, cfg),
            part,
            slices,
        }
    }

    /// Computes each job's slice until stopped or aborted. Blocks the worker's thread (it
    /// takes no more messages; the page ends it with `terminate`).
    pub fn run(self) {
        let (pool, simd) = match Pool::new(Some(1)) {
            Ok(pool) => (pool, Simd::detect()),
            Err(_) => return,
        };
        let mut scratch = MatmulScratch::default();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut seen = 0;
        while let Some(job) = self.views.wait_change(GO, seen) {
            seen = job;
            let index = self.views.load(INDEX);
            let rows = self.views.load(ROWS).max(0) as usize;
            let Some((start, m)) = usize::try_from(index).ok().and_then(|i| self.slices.get(i))
            else {
                return;
            };
            x.resize(rows * m.cols, 0.0);
            self.views.x.subarray(0, x.len() as u32).copy_to(&mut x[..]);
            y.resize(rows * m.rows, 0.0);
            matmul::matmul(
                &pool,
                simd,
                m,
                &x,
                rows,
                &mut y,
                Epilogue::None,
                &mut scratch,
            );
            let at = (rows * start) as u32;
            self.views
                .out
                .subarray(at, at + y.len() as u32)
                .copy_from(&y);
            self.views.signal(DONE + self.part as u32, job);
        }
    }
}
