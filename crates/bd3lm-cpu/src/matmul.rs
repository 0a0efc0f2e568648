//! `y = x · Wᵀ` over a thread pool: the weight matrix's outputs are split into contiguous
//! chunks, one kernel call per chunk, and activation rows go through in tiles of at most
//! [`MAX_TILE_ROWS`]. Weights stay in the package's scheme ([`view`]).

use crate::kernels::{self, Input, QuantActs, Simd, WeightView, MAX_TILE_ROWS};
use crate::threads::Pool;
use bd3lm::quant::{Matrix, MatrixData};

/// A kernel's view of a package matrix (no copy).
pub fn view(m: &Matrix) -> WeightView<'_> {
    match &m.data {
        MatrixData::F32(v) => WeightView::F32(v),
        MatrixData::F16(v) => WeightView::F16(v),
        MatrixData::Q8 { q, scales } => WeightView::Q8 { q, scales },
        MatrixData::Q4 { q, scales, mins } => WeightView::Q4 { q, scales, mins },
    }
}

/// Buffers reused by every matmul of an engine.
#[derive(Default)]
pub struct MatmulScratch {
    acts: QuantActs,
    /// `[outputs, rows]`: the kernels' transposed results before they are laid out.
    tile: Vec<f32>,
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

/// `out[r * n + o] = W[o] · x[r]` for `rows` rows of `x` (`[rows, k]`), `W` `[n, k]`. When the
/// pool splits `W` with other parties, `w` is this party's slice and they compute the rest.
pub fn matmul(
    pool: &Pool,
    simd: Simd,
    w: &Matrix,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    let Some((split, m)) = pool.split().and_then(|s| s.locate(w).map(|m| (s, m))) else {
        return matmul_columns(pool, simd, w, x, rows, out, (w.rows, 0), scratch);
    };
    split.start(m, &x[..rows * w.cols], rows);
    let columns = (m.outputs, m.local_start);
    matmul_columns(pool, simd, w, x, rows, out, columns, scratch);
    split.finish(m, rows, out)
}

/// `out[r * stride + first + o] = W[o] · x[r]` for `(stride, first) = columns`: `W`'s outputs
/// as columns `[first, first + n)` of rows `stride` long (the hook for a split matrix).
#[allow(clippy::too_many_arguments)]
pub fn matmul_columns(
    pool: &Pool,
    simd: Simd,
    w: &Matrix,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
    (stride, first): (usize, usize),
    scratch: &mut MatmulScratch,
) {
    let (n, k) = (w.rows, w.cols);
    let view = view(w);
    let MatmulScratch { acts, tile } = scratch;
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
            kernels::matmul_tile(simd, view, k, i * chunk, input, c)
        });
        // Transposed back in blocks of outputs, so the tile is read once, in order.
        const BLOCK: usize = 256;
        for o0 in (0..n).step_by(BLOCK) {
            let o1 = (o0 + BLOCK).min(n);
            for r in 0..rt {
                let at = (r0 + r) * stride + first;
                let dst = &mut out[at + o0..at + o1];
                for (d, o) in dst.iter_mut().zip(o0..o1) {
                    *d = tile[o * rt + r];
                }
            }
        }
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
