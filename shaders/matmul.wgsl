// y = x W^T for the few rows of a model call: every projection (ROWS = 2B, the most a call
// has: a folded call's clean block and denoised block; the call's own row count is Step.rows)
// and the LM head (ROWS = B or 1, from the denoised block's Step.draw_row).
// The LayerNorm before a projection was already applied by the kernel that produced its input
// (embed.wgsl, residual.wgsl write the normalised rows once per layer), so this kernel only
// streams the weights.
//
// Work split: workgroup (wg.x, wg.y) computes COLS output columns for all ROWS rows over the
// inputs of K split wg.y. Each column is split over LANES = 256 / COLS threads along K
// (consecutive lanes read consecutive weights); the lanes' partial sums are added by a fixed
// tree in workgroup memory. Every weight is read by exactly one thread, and no float atomics
// are used: results are deterministic. The tiling (COLS, K splits) is chosen by the host:
// wide columns for CPU adapters (LANES = 1, no barriers), narrow columns and K splits for GPUs
// so that a released-size matrix keeps every compute unit busy.
//
// Epilogues (exactly one):
//   EPI_QKV:     columns [0,H) -> q, [H,2H) -> K cache, [2H,3H) -> V cache at the ring slot
//                of each row (a clean row's in its own window, see uniforms.wgsl).
//   EPI_BIAS:    out = acc + bias                        (LM head)
//   EPI_GELU:    out = gelu_tanh(acc + bias)             (MLP in)
//   EPI_PARTIAL: partial sums of split wg.y, [split, row, n] (attention out, MLP out: added,
//                gated and normalised by residual.wgsl)
// FORMAT_*: weight storage, see weights.wgsl.
#flags EPI_QKV EPI_BIAS EPI_GELU EPI_PARTIAL

#include uniforms.wgsl

const WG: u32 = 256u;
const COLS: u32 = {{COLS}}u;
const LANES: u32 = WG / COLS;
const ROWS: u32 = {{ROWS}}u;

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

// Lane sums of four rows at a time: [row j][thread] (4 KiB of workgroup memory).
var<workgroup> red: array<f32, 1024>;

fn tanh_safe(u: f32) -> f32 {
    // tanh via exp: WGSL's tanh may be computed as sinh/cosh, which overflows to NaN.
    let e = exp(-2.0 * abs(u));
    return sign(u) * (1.0 - e) / (1.0 + e);
}

fn gelu_tanh(u: f32) -> f32 {
    return 0.5 * u * (1.0 + tanh_safe(0.7978846 * (u + 0.044715 * u * u * u)));
}

#if EPI_BIAS
// The LM head starts at the step's draw row of the denoised block (first hitting draws only
// the revealed row) and always runs ROWS rows.
fn first_row() -> u32 {
    return step.clean_rows + step.draw_row;
}
fn row_count() -> u32 {
    return ROWS;
}
#else
fn first_row() -> u32 {
    return 0u;
}
fn row_count() -> u32 {
    return min(step.rows, ROWS);
}
#endif

fn epilogue(r: u32, col: u32, split: u32, acc: f32) {
#if EPI_QKV
    let h = p.hidden;
    if (col < h) {
        out[r * h + col] = acc;
    } else {
        var slot = (step.ring_start + step.cached + r - step.clean_rows) % step.ring;
        if (r < step.clean_rows) {
            slot = (step.clean_ring_start + step.clean_cached + r) % step.ring;
        }
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
#if EPI_PARTIAL
    out[(split * ROWS + r) * p.n + col] = acc;
#endif
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let k = wp.k;
    let lane = tid % LANES;
    let col = wg.x * COLS + tid / LANES;
    let split = wg.y;
    let c_end = min(k, (split + 1u) * p.k_slice) / 8u;
    let rows = row_count();
    var acc: array<f32, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        acc[r] = 0.0;
    }
    // The block's rows are read straight from global memory: every column of the workgroup
    // reads the same inputs, so they stay in cache.
    let row0 = first_row();
    if (col < p.n) {
        for (var c = split * p.k_slice / 8u + lane; c < c_end; c = c + LANES) {
            let w = load8(col, c);
            // A constant trip count (unrolled, acc stays in registers) and a uniform guard.
            for (var r = 0u; r < ROWS; r = r + 1u) {
                if (r < rows) {
                    let o = (row0 + r) * k + c * 8u;
                    let xa = vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]);
                    let xb = vec4<f32>(x[o + 4u], x[o + 5u], x[o + 6u], x[o + 7u]);
                    acc[r] = acc[r] + dot(w.lo, xa) + dot(w.hi, xb);
                }
            }
        }
    }
    if (LANES == 1u) {
        if (col < p.n) {
            for (var r = 0u; r < rows; r = r + 1u) {
                epilogue(r, col, split, acc[r]);
            }
        }
        return;
    }
    // Lane reduction, four rows at a time, by a fixed tree over the lanes of each column.
    for (var r0 = 0u; r0 < rows; r0 = r0 + 4u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            var v = 0.0;
            if (r0 + j < rows) {
                v = acc[r0 + j];
            }
            red[j * WG + tid] = v;
        }
        workgroupBarrier();
        for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
            if (lane < s) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    red[j * WG + tid] = red[j * WG + tid] + red[j * WG + tid + s];
                }
            }
            workgroupBarrier();
        }
        for (var i = tid; i < COLS * 4u; i = i + WG) {
            let cl = i / 4u;
            let j = i % 4u;
            let c = wg.x * COLS + cl;
            if (c < p.n && r0 + j < rows) {
                epilogue(r0 + j, c, split, red[j * WG + cl * LANES]);
            }
        }
        workgroupBarrier();
    }
}
