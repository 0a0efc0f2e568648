//! `y = x · Wᵀ` over a thread pool: the weight matrix's outputs are split into contiguous
//! chunks, one kernel call per chunk, and activation rows go through in tiles of at most
//! [`MAX_TILE_ROWS`]. Each task writes its outputs into their columns and applies the
//! [`Epilogue`] there. Weights stay in the package's scheme ([`view`]).

use crate::kernels::{self, Input, QuantActs, Simd, WeightView, MAX_TILE_ROWS};
use crate::math;
use crate::threads::Pool;
use bd3lm::quant::{Matrix, MatrixData, GROUP};
use std::collections::HashMap;

/// A kernel's view of a package matrix (no copy).
pub fn view(m: &Matrix) -> WeightView<'_> {
    match &m.data {
        MatrixData::F32(v) => WeightView::F32(v),
        MatrixData::F16(v) => WeightView::F16(v),
        MatrixData::Q8 { q, scales } => WeightView::Q8 {
            q,
            scales,
            sums: None,
        },
        MatrixData::Q4 { q, scales, mins } => WeightView::Q4 { q, scales, mins },
    }
}

/// The q8 matrices' group sums (`WeightView::Q8::sums`) of an engine's weights, computed once
/// for the AVX-512 lane kernel (4 bytes per 32 weights), by matrix address: weights behind
/// an `Arc` never move, and the codes' address is checked too.
#[derive(Default)]
pub struct WeightSums {
    by_matrix: HashMap<usize, (usize, Vec<i32>)>,
}

impl WeightSums {
    pub fn of<'a>(matrices: impl IntoIterator<Item = &'a Matrix>) -> WeightSums {
        let mut by_matrix = HashMap::new();
        for m in matrices {
            if let MatrixData::Q8 { q, .. } = &m.data {
                let mut sums = vec![0i32; m.rows * (m.cols / GROUP)];
                for (row, out) in q
                    .chunks_exact(m.cols)
                    .zip(sums.chunks_exact_mut(m.cols / GROUP))
                {
                    kernels::q8_group_sums(row, out);
                }
                let key = m as *const Matrix as usize;
                by_matrix.insert(key, (q.as_ptr() as usize, sums));
            }
        }
        WeightSums { by_matrix }
    }

    /// [`view`] with `m`'s group sums when known.
    pub fn view<'a>(&'a self, m: &'a Matrix) -> WeightView<'a> {
        match view(m) {
            WeightView::Q8 { q, scales, .. } => WeightView::Q8 {
                q,
                scales,
                sums: self.get(m),
            },
            other => other,
        }
    }

    fn get(&self, m: &Matrix) -> Option<&[i32]> {
        let MatrixData::Q8 { q, .. } = &m.data else {
            return None;
        };
        let (codes, sums) = self.by_matrix.get(&(m as *const Matrix as usize))?;
        (*codes == q.as_ptr() as usize).then_some(sums.as_slice())
    }
}

/// Buffers reused by every matmul of an engine, and what it knows of the engine's weights.
#[derive(Default)]
pub struct MatmulScratch {
    acts: QuantActs,
    /// `[outputs, rows]`: the kernels' transposed results before they are laid out.
    tile: Vec<f32>,
    pub sums: WeightSums,
}

/// Multiply-accumulates per task below which splitting work costs more than it saves.
const MIN_TASK_WORK: usize = 1 << 16;

/// Outputs per task: about four tasks per thread, each worth the scheduling.
fn chunk_outputs(threads: usize, outputs: usize, work_per_output: usize) -> usize {
    if threads <= 1 {
        return outputs.max(1);
    }
    let even = outputs.div_ceil(threads * 4);
    let worth = MIN_TASK_WORK.div_ceil(work_per_output.max(1));
    even.max(worth).clamp(1, outputs.max(1))
}

/// What a matmul applies to its outputs before it returns, per output column: done by the
/// thread that computed them, while they are still in its cache.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    None,
    /// `y += bias[o]`.
    Bias(&'a [f32]),
    /// `y = gelu(y + bias[o])` (tanh approximation, `math::bias_gelu`).
    BiasGelu(&'a [f32]),
}

impl Epilogue<'_> {
    /// Applies the epilogue to `y`, outputs `first..first + y.len()` of one row.
    fn apply(self, simd: Simd, y: &mut [f32], first: usize) {
        if y.is_empty() {
            return;
        }
        match self {
            Epilogue::None => {}
            Epilogue::Bias(b) => math::add_bias(y, &b[first..first + y.len()]),
            Epilogue::BiasGelu(b) => math::bias_gelu(simd, y, &b[first..first + y.len()]),
        }
    }
}

/// `out[r * n + o] = W[o] · x[r]` for `rows` rows of `x` (`[rows, k]`), `W` `[n, k]`, then the
/// epilogue. When the pool splits `W` with other parties, `w` is this party's slice and they
/// compute the rest.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    pool: &Pool,
    simd: Simd,
    w: &Matrix,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
    epilogue: Epilogue<'_>,
    scratch: &mut MatmulScratch,
) {
    let Some((split, m)) = pool.split().and_then(|s| s.locate(w).map(|m| (s, m))) else {
        let columns = (w.rows, 0);
        return matmul_columns(pool, simd, w, x, rows, out, columns, epilogue, scratch);
    };
    split.start(m, &x[..rows * w.cols], rows);
    let columns = (m.outputs, m.local_start);
    matmul_columns(pool, simd, w, x, rows, out, columns, epilogue, scratch);
    split.finish(m, rows, out);
    // The other parties' columns.
    let local = m.local_start..m.local_start + w.rows;
    for row in out.chunks_exact_mut(m.outputs).take(rows) {
        epilogue.apply(simd, &mut row[..local.start], 0);
        epilogue.apply(simd, &mut row[local.end..], local.end);
    }
}

/// `out` shared by the tasks of one matmul, each writing its own columns.
#[derive(Clone, Copy)]
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the tasks write disjoint columns (`SharedOut::segment`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// `out[at..at + len]`.
    ///
    /// # Safety
    /// No other live reference may overlap the segment.
    #[allow(clippy::mut_from_ref)]
    unsafe fn segment(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.len, "segment past the output");
        // SAFETY: in bounds (asserted); exclusive by the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

/// `out[r * stride + first + o] = W[o] · x[r]` for `(stride, first) = columns`: `W`'s outputs
/// as columns `[first, first + n)` of rows `stride` long (the hook for a split matrix), the
/// epilogue applied to those columns.
#[allow(clippy::too_many_arguments)]
pub fn matmul_columns(
    pool: &Pool,
    simd: Simd,
    w: &Matrix,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
    (stride, first): (usize, usize),
    epilogue: Epilogue<'_>,
    scratch: &mut MatmulScratch,
) {
    let (n, k) = (w.rows, w.cols);
    let MatmulScratch { acts, tile, sums } = scratch;
    let view = sums.view(w);
    assert!(
        rows == 0 || (rows - 1) * stride + first + n <= out.len(),
        "matmul output"
    );
    let shared = SharedOut {
        ptr: out.as_mut_ptr(),
        len: out.len(),
    };
    for r0 in (0..rows).step_by(MAX_TILE_ROWS) {
        let rt = (rows - r0).min(MAX_TILE_ROWS);
        let xs = &x[r0 * k..(r0 + rt) * k];
        let input = match view.quant_scheme() {
            Some(scheme) => {
                acts.prepare(xs, rt, k, scheme, simd);
                Input::Quant(acts)
            }
            None => Input::F32 { x: xs, rows: rt },
        };
        tile.resize(n * rt, 0.0);
        let chunk = chunk_outputs(pool.threads(), n, rt * k);
        pool.for_each_chunk(&mut tile[..n * rt], chunk * rt, |i, c| {
            let o0 = i * chunk;
            kernels::matmul_tile(simd, view, k, o0, input, c);
            // The chunk's columns of each row, transposed from `c` (`[outputs, rows]`).
            let len = c.len() / rt;
            for r in 0..rt {
                // SAFETY: chunk i alone writes columns first + o0.. of these rows.
                let y = unsafe { shared.segment((r0 + r) * stride + first + o0, len) };
                for (o, v) in y.iter_mut().enumerate() {
                    *v = c[o * rt + r];
                }
                epilogue.apply(simd, y, first + o0);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_outputs() {
        assert_eq!(chunk_outputs(1, 100, 10), 100);
        assert_eq!(chunk_outputs(2, 50_258, 768), 6_283);
        assert_eq!(chunk_outputs(2, 8, 1), 8, "tiny work stays in one task");
        assert_eq!(chunk_outputs(4, 0, 10), 1);
    }
}
