//! The scalar kernels: what every vector family computes, written plainly. They run where no
//! vector family is available and are the oracle of the kernel tests.

use super::{f16_to_f32, Input, QuantActs, WeightView, GROUP};

/// `sum a[i] b[i]` in f32 with eight independent lanes (order fixed).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            lanes[j] += x[j] * y[j];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

pub(super) fn matmul_tile(
    w: WeightView<'_>,
    k: usize,
    first: usize,
    count: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    let rows = input.rows();
    match (w, input) {
        (WeightView::F32(v), Input::F32 { x, .. }) => {
            for i in 0..count {
                let o = first + i;
                let wr = &v[o * k..(o + 1) * k];
                for r in 0..rows {
                    out[i * rows + r] = dot_f32(wr, &x[r * k..(r + 1) * k]);
                }
            }
        }
        (WeightView::F16(v), Input::F32 { x, .. }) => {
            let mut row = vec![0f32; k];
            for i in 0..count {
                let o = first + i;
                for (d, &b) in row.iter_mut().zip(&v[o * k..(o + 1) * k]) {
                    *d = f16_to_f32(b);
                }
                for r in 0..rows {
                    out[i * rows + r] = dot_f32(&row, &x[r * k..(r + 1) * k]);
                }
            }
        }
        (WeightView::Q8 { q, scales, .. }, Input::Quant(a)) => {
            for i in 0..count {
                let o = first + i;
                for r in 0..rows {
                    out[i * rows + r] = q8_row(q, scales, k, o, a, r);
                }
            }
        }
        (WeightView::Q4 { q, scales, mins }, Input::Quant(a)) => {
            for i in 0..count {
                let o = first + i;
                for r in 0..rows {
                    out[i * rows + r] = q4_row(q, scales, mins, k, o, a, r);
                }
            }
        }
        _ => panic!("kernel input does not suit the weight scheme"),
    }
}

fn q8_row(q: &[i8], scales: &[u16], k: usize, o: usize, a: &QuantActs, r: usize) -> f32 {
    let groups = k / GROUP;
    let codes = &a.q[r * k..(r + 1) * k];
    let mut acc = 0f32;
    for g in 0..groups {
        let w = &q[o * k + g * GROUP..o * k + (g + 1) * GROUP];
        let x = &codes[g * GROUP..(g + 1) * GROUP];
        let dot: i32 = w.iter().zip(x).map(|(&p, &c)| p as i32 * c as i32).sum();
        let scale = f16_to_f32(scales[o * groups + g]) * a.group_scale(r, g);
        acc += scale * dot as f32;
    }
    acc
}

fn q4_row(
    q: &[u8],
    scales: &[u16],
    mins: &[u16],
    k: usize,
    o: usize,
    a: &QuantActs,
    r: usize,
) -> f32 {
    let groups = k / GROUP;
    let codes = &a.q[r * k..(r + 1) * k];
    let (mut acc, mut min_acc) = (0f32, 0f32);
    for g in 0..groups {
        let bytes = &q[(o * k + g * GROUP) / 2..(o * k + (g + 1) * GROUP) / 2];
        // Activations are in q4 order: even columns, then odd ones.
        let x = &codes[g * GROUP..(g + 1) * GROUP];
        let mut dot = 0i32;
        for (j, &b) in bytes.iter().enumerate() {
            dot += (b & 15) as i32 * x[j] as i32 + (b >> 4) as i32 * x[GROUP / 2 + j] as i32;
        }
        let scale = f16_to_f32(scales[o * groups + g]) * a.group_scale(r, g);
        acc += scale * dot as f32;
        min_acc += f16_to_f32(mins[o * groups + g]) * a.scale_sum[r * groups + g];
    }
    acc + min_acc
}
