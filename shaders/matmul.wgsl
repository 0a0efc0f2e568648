// y = x W^T for the few rows of one block (B <= 16): the projections of every layer and the
// LM head. One workgroup computes COLS output columns for all ROWS rows; each column is
// split over LANES threads along K, summed in a fixed order (deterministic, no atomics).
//
// Compile-time variants:
//   LN:           prologue: x -> LayerNorm(x) * norm * (1 + scale) + shift (spec §4.3), with
//                 the row statistics computed by each workgroup (saves a dispatch per norm).
//   EPI_QKV:      columns [0,H) -> q, [H,2H) -> K cache, [2H,3H) -> V cache at the ring slot
//                 of each block row.
//   EPI_BIAS:     out = acc + bias                      (LM head)
//   EPI_GELU:     out = gelu_tanh(acc + bias)           (MLP in)
//   EPI_RESIDUAL: out += gate * acc (+ bias if BIAS)    (attention out, MLP out)
//   FORMAT_*:     weight storage, see weights.wgsl.

const WG: u32 = 256u;
const LANES: u32 = 8u;
const COLS: u32 = 32u;
const ROWS: u32 = {{ROWS}}u;
// K values per shared tile: ROWS * TK <= 4096 floats.
const TK: u32 = {{TK}}u;

struct WeightParams {
    k: u32,
    split_row: u32,
    scale_off0: u32,
    scale_off1: u32,
}

struct MatmulParams {
    n: u32,
    // Offsets into `vecs` (floats).
    norm_off: u32,
    shift_off: u32,
    scale_off: u32,
    bias_off: u32,
    gate_off: u32,
    // EPI_QKV: hidden size and the layer's first float in the caches.
    hidden: u32,
    cache_layer_off: u32,
}

struct Step {
    cached: u32,
    ring_start: u32,
    n_ctx: u32,
    // First block row read from x (the single-row LM head of first hitting).
    row_offset: u32,
}

@group(0) @binding(0) var<uniform> wp: WeightParams;
@group(0) @binding(1) var<uniform> p: MatmulParams;
@group(0) @binding(2) var<uniform> step: Step;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> vecs: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
#if EPI_QKV
@group(0) @binding(8) var<storage, read_write> kcache: array<f32>;
@group(0) @binding(9) var<storage, read_write> vcache: array<f32>;
#endif

#include weights.wgsl

var<workgroup> buf: array<f32, 4096>;
var<workgroup> stats: array<f32, 32>;

fn tanh_safe(u: f32) -> f32 {
    // tanh via exp: WGSL's tanh may be computed as sinh/cosh, which overflows to NaN.
    let e = exp(-2.0 * abs(u));
    return sign(u) * (1.0 - e) / (1.0 + e);
}

fn gelu_tanh(u: f32) -> f32 {
    return 0.5 * u * (1.0 + tanh_safe(0.7978846 * (u + 0.044715 * u * u * u)));
}

// Mean and 1/std of each of the ROWS rows (16 threads per row, fixed-order tree sums).
fn layer_norm_stats(tid: u32, k: u32) {
    let r = tid / 16u;
    let part = tid % 16u;
    let row = step.row_offset + r;
    var s = 0.0;
    if (r < ROWS) {
        for (var i = part; i < k; i = i + 16u) {
            s = s + x[row * k + i];
        }
    }
    buf[tid] = s;
    workgroupBarrier();
    for (var h = 8u; h > 0u; h = h >> 1u) {
        if (part < h) {
            buf[tid] = buf[tid] + buf[tid + h];
        }
        workgroupBarrier();
    }
    let mean = buf[r * 16u] / f32(k);
    workgroupBarrier();
    var v = 0.0;
    if (r < ROWS) {
        for (var i = part; i < k; i = i + 16u) {
            let d = x[row * k + i] - mean;
            v = v + d * d;
        }
    }
    buf[tid] = v;
    workgroupBarrier();
    for (var h = 8u; h > 0u; h = h >> 1u) {
        if (part < h) {
            buf[tid] = buf[tid] + buf[tid + h];
        }
        workgroupBarrier();
    }
    if (part == 0u && r < ROWS) {
        stats[2u * r] = mean;
        stats[2u * r + 1u] = 1.0 / sqrt(buf[tid] / f32(k) + 1e-5);
    }
    workgroupBarrier();
}

fn epilogue(r: u32, col: u32, acc: f32) {
#if EPI_QKV
    let h = p.hidden;
    if (col < h) {
        out[r * h + col] = acc;
    } else {
        let slot = (step.ring_start + step.cached + r) % step.n_ctx;
        if (col < 2u * h) {
            kcache[p.cache_layer_off + slot * h + col - h] = acc;
        } else {
            vcache[p.cache_layer_off + slot * h + col - 2u * h] = acc;
        }
    }
#endif
#if EPI_BIAS
    out[r * p.n + col] = acc + vecs[p.bias_off + col];
#endif
#if EPI_GELU
    out[r * p.n + col] = gelu_tanh(acc + vecs[p.bias_off + col]);
#endif
#if EPI_RESIDUAL
#if BIAS
    let branch = acc + vecs[p.bias_off + col];
#else
    let branch = acc;
#endif
    out[r * p.n + col] = out[r * p.n + col] + vecs[p.gate_off + col] * branch;
#endif
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let k = wp.k;
    let lane = tid % LANES;
    let col = wg.x * COLS + tid / LANES;
#if LN
    layer_norm_stats(tid, k);
#endif
    var acc: array<f32, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        acc[r] = 0.0;
    }
    for (var t0 = 0u; t0 < k; t0 = t0 + TK) {
        let tl = min(TK, k - t0);
        for (var i = tid; i < ROWS * tl; i = i + WG) {
            let r = i / tl;
            let kk = i % tl;
            var v = x[(step.row_offset + r) * k + t0 + kk];
#if LN
            let c = t0 + kk;
            v = (v - stats[2u * r]) * stats[2u * r + 1u];
            v = v * vecs[p.norm_off + c] * (1.0 + vecs[p.scale_off + c]) + vecs[p.shift_off + c];
#endif
            buf[r * TK + kk] = v;
        }
        workgroupBarrier();
        if (col < p.n) {
            for (var c = lane; c < tl / 8u; c = c + LANES) {
                let w = load8(col, t0 / 8u + c);
                for (var r = 0u; r < ROWS; r = r + 1u) {
                    let o = r * TK + c * 8u;
                    let xa = vec4<f32>(buf[o], buf[o + 1u], buf[o + 2u], buf[o + 3u]);
                    let xb = vec4<f32>(buf[o + 4u], buf[o + 5u], buf[o + 6u], buf[o + 7u]);
                    acc[r] = acc[r] + dot(w.lo, xa) + dot(w.hi, xb);
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < ROWS; r = r + 1u) {
        buf[tid * ROWS + r] = acc[r];
    }
    workgroupBarrier();
    for (var i = tid; i < COLS * ROWS; i = i + WG) {
        let cl = i / ROWS;
        let r = i % ROWS;
        let c = wg.x * COLS + cl;
        if (c < p.n) {
            var s = 0.0;
            for (var l = 0u; l < LANES; l = l + 1u) {
                s = s + buf[(cl * LANES + l) * ROWS + r];
            }
            epilogue(r, c, s);
        }
    }
}
