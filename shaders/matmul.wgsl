// y = x W^T for the few rows of one block (B <= 16): the projections of every layer and the
// LM head. One workgroup computes COLS output columns for all ROWS rows; each column is
// split over LANES threads along K (consecutive lanes read consecutive weights), and the
// lanes' partial sums are added in a fixed order (deterministic, no atomics). The block's
// rows are read straight from global memory (they stay in cache: every column reads them),
// so the only barriers are the LayerNorm statistics and the final lane reduction.
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
// Threads per output column: 8 on GPUs (coalesced weight reads, lane sums reduced in shared
// memory); 1 on CPU adapters (lavapipe, SwiftShader), where every barrier of a workgroup
// costs a context switch per SIMD group, so fewer, wider workgroups win.
const LANES: u32 = {{LANES}}u;
const COLS: u32 = WG / LANES;
const ROWS: u32 = {{ROWS}}u;

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

// Workgroup memory stays within WebGPU's default 16 KiB: an 8 KiB tile of normalised inputs
// (LN variants), 4 KiB for the lane reduction (4 rows at a time) and the LN statistics.
const XT: u32 = {{XT}}u;
var<workgroup> xs: array<f32, 2048>;
var<workgroup> red: array<f32, 1024>;
var<workgroup> stats: array<f32, 32>;

fn tanh_safe(u: f32) -> f32 {
    // tanh via exp: WGSL's tanh may be computed as sinh/cosh, which overflows to NaN.
    let e = exp(-2.0 * abs(u));
    return sign(u) * (1.0 - e) / (1.0 + e);
}

fn gelu_tanh(u: f32) -> f32 {
    return 0.5 * u * (1.0 + tanh_safe(0.7978846 * (u + 0.044715 * u * u * u)));
}

// Mean and 1/std of each of the ROWS rows: 16 threads per row run Welford over their
// elements, then pairs are merged with Chan's formula in a fixed tree (4 levels).
fn layer_norm_stats(tid: u32, k: u32) {
    let r = tid / 16u;
    let part = tid % 16u;
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    if (r < ROWS) {
        let row = step.row_offset + r;
        for (var i = part; i < k; i = i + 16u) {
            let v = x[row * k + i];
            n = n + 1.0;
            let d = v - mean;
            mean = mean + d / n;
            m2 = m2 + d * (v - mean);
        }
    }
    red[3u * tid] = n;
    red[3u * tid + 1u] = mean;
    red[3u * tid + 2u] = m2;
    workgroupBarrier();
    for (var h = 8u; h > 0u; h = h >> 1u) {
        if (part < h && r < ROWS) {
            let o = 3u * (tid + h);
            let nb = red[o];
            if (nb > 0.0) {
                let na = red[3u * tid];
                let nt = na + nb;
                let delta = red[o + 1u] - red[3u * tid + 1u];
                red[3u * tid + 1u] = red[3u * tid + 1u] + delta * nb / nt;
                red[3u * tid + 2u] = red[3u * tid + 2u] + red[o + 2u] + delta * delta * na * nb / nt;
                red[3u * tid] = nt;
            }
        }
        workgroupBarrier();
    }
    if (part == 0u && r < ROWS) {
        stats[2u * r] = red[3u * tid + 1u];
        stats[2u * r + 1u] = 1.0 / sqrt(red[3u * tid + 2u] / f32(k) + 1e-5);
    }
    workgroupBarrier();
}

// Input value x[r, c] as the matmul consumes it (normalised and modulated with LN).
fn input(r: u32, c: u32) -> f32 {
    var v = x[(step.row_offset + r) * wp.k + c];
#if LN
    v = (v - stats[2u * r]) * stats[2u * r + 1u];
    v = v * vecs[p.norm_off + c] * (1.0 + vecs[p.scale_off + c]) + vecs[p.shift_off + c];
#endif
    return v;
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
#if LN
    // Normalise each input once per workgroup into a shared tile, then every column reads it.
    for (var t0 = 0u; t0 < k; t0 = t0 + XT) {
        let tl = min(XT, k - t0);
        for (var i = tid; i < ROWS * tl; i = i + WG) {
            let r = i / tl;
            let kk = i % tl;
            xs[r * XT + kk] = input(r, t0 + kk);
        }
        workgroupBarrier();
        if (col < p.n) {
            for (var c = lane; c < tl / 8u; c = c + LANES) {
                let w = load8(col, t0 / 8u + c);
                for (var r = 0u; r < ROWS; r = r + 1u) {
                    let o = r * XT + c * 8u;
                    let xa = vec4<f32>(xs[o], xs[o + 1u], xs[o + 2u], xs[o + 3u]);
                    let xb = vec4<f32>(xs[o + 4u], xs[o + 5u], xs[o + 6u], xs[o + 7u]);
                    acc[r] = acc[r] + dot(w.lo, xa) + dot(w.hi, xb);
                }
            }
        }
        workgroupBarrier();
    }
#else
    // Plain inputs are read straight from global memory (cached: every column reads them).
    if (col < p.n) {
        for (var c = lane; c < k / 8u; c = c + LANES) {
            let w = load8(col, c);
            for (var r = 0u; r < ROWS; r = r + 1u) {
                let o = (step.row_offset + r) * k + c * 8u;
                let xa = vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]);
                let xb = vec4<f32>(x[o + 4u], x[o + 5u], x[o + 6u], x[o + 7u]);
                acc[r] = acc[r] + dot(w.lo, xa) + dot(w.hi, xb);
            }
        }
    }
#endif
#if SPLIT_K
    // Lane reduction, four rows at a time: thread t < 4 * COLS sums the lanes of (column t / 4,
    // row r0 + t % 4) in lane order.
    for (var r0 = 0u; r0 < ROWS; r0 = r0 + 4u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            var v = 0.0;
            if (r0 + j < ROWS) {
                v = acc[r0 + j];
            }
            red[tid * 4u + j] = v;
        }
        workgroupBarrier();
        if (tid < COLS * 4u) {
            let cl = tid / 4u;
            let r = r0 + tid % 4u;
            let c = wg.x * COLS + cl;
            if (c < p.n && r < ROWS) {
                var s = 0.0;
                for (var l = 0u; l < LANES; l = l + 1u) {
                    s = s + red[(cl * LANES + l) * 4u + tid % 4u];
                }
                epilogue(r, c, s);
            }
        }
        workgroupBarrier();
    }
#else
    if (col < p.n) {
        for (var r = 0u; r < ROWS; r = r + 1u) {
            epilogue(r, col, acc[r]);
        }
    }
#endif
}
