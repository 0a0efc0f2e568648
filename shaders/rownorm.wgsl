// LayerNorm + adaLN modulation of one row of `x` into `xn` (spec §4.3), included by the
// kernels that finish a row (embed.wgsl, residual.wgsl) so that every row is normalised once
// per layer and the projections read `xn` as it is. Mean and biased variance by two passes
// with fixed-order tree sums (deterministic), eps 1e-5, then
// xn = (x - mean) * rstd * norm * (1 + scale) + shift.
// The including shader declares `np: NormParams`, `x`, `xn` and `vecs`, and calls
// `normalise_row` from uniform control flow with a 256-thread workgroup. Each thread reads only
// the elements c = tid + 256 i, the ones it wrote itself (or after a storage barrier).

var<workgroup> nred: array<f32, 256>;

fn row_sum(tid: u32, v: f32) -> f32 {
    nred[tid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (tid < s) {
            nred[tid] = nred[tid] + nred[tid + s];
        }
        workgroupBarrier();
    }
    let total = nred[0];
    workgroupBarrier();
    return total;
}

fn normalise_row(tid: u32, row: u32) {
    let n = np.n;
    let base = row * n;
    var s = 0.0;
    for (var c = tid; c < n; c = c + 256u) {
        s = s + x[base + c];
    }
    let mean = row_sum(tid, s) / f32(n);
    var q = 0.0;
    for (var c = tid; c < n; c = c + 256u) {
        let d = x[base + c] - mean;
        q = q + d * d;
    }
    let rstd = 1.0 / sqrt(row_sum(tid, q) / f32(n) + 1e-5);
    for (var c = tid; c < n; c = c + 256u) {
        let v = (x[base + c] - mean) * rstd;
        xn[base + c] = v * vecs[np.norm_off + c] * (1.0 + vecs[np.scale_off + c]) + vecs[np.shift_off + c];
    }
}
