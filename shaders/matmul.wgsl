// y = x W^T for the few rows of a model call: every projection (ROWS = 2B, the most a call
// has: a folded call's clean block and denoised block; the call's own row count is Step.rows)
// and the LM head (ROWS = B or 1, from the denoised block's Step.draw_row).
// The LayerNorm before a projection was already applied by the kernel that produced its input
// (embed.wgsl, residual.wgsl write the normalised rows once per layer), so this kernel only
// streams the weights.
//
// Two paths, chosen by the host's tiling (tiling.rs); both deterministic, without atomics,
// every weight read by exactly one thread:
//
// STAGED (GPUs), shaped like the fast engines' matrix-vector kernels: workgroup (wg.x, wg.y)
// computes COLS = 4 * CG output columns for all ROWS rows over K split wg.y. Its WG threads
// are RSPLIT row groups x CG column groups x LANES lanes; each thread owns 4 columns and
// keeps their sums for its RPT rows in registers (one vec4 per row, indexed only by
// constants: the loops over rows and over a step's values are unrolled by `#repeat`). K is walked in chunks of
// CHUNK = LANES * KSTEP values: the chunk of every row is staged once in workgroup memory
// with vec4 loads, then each lane reads its KSTEP weights of each of its columns as one
// 16-byte word (weights.wgsl, `load_wide`) and uses each decoded weight for every row. The
// staged chunk is laid out so that the lanes of a warp read consecutive vec4s (no bank
// conflicts). At the end the lanes' sums are added in lane order through workgroup memory.
//
// Otherwise (CPU adapters): each column split over WG / COLS lanes along K (LANES = 1 when
// COLS = WG: one thread per column, no barriers), rows read from global memory.
//
// Epilogues (exactly one):
//   EPI_QKV:     columns [0,H) -> q, [H,2H) -> K cache, [2H,3H) -> V cache at the ring slot
//                of each row (a clean row's in its own window, see uniforms.wgsl).
//   EPI_BIAS:    out = acc + bias                        (LM head)
//   EPI_GELU:    out = gelu_tanh(acc + bias)             (MLP in)
//   EPI_PARTIAL: partial sums of split wg.y, [split, row, n] (attention out, MLP out: added,
//                gated and normalised by residual.wgsl)
// FORMAT_*: weight storage, see weights.wgsl.
#flags EPI_QKV EPI_BIAS EPI_GELU EPI_PARTIAL STAGED

#include uniforms.wgsl

const WG: u32 = {{WG}}u;
const COLS: u32 = {{COLS}}u;
const ROWS: u32 = {{ROWS}}u;

@group(0) @binding(0) var<uniform> wp: WeightParams;
@group(0) @binding(1) var<uniform> p: MatmulParams;
@group(0) @binding(2) var<uniform> step: Step;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> vecs: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
#if EPI_QKV
@group(0) @binding(8) var<storage, read_write> kcache: array<f32>;
@group(0) @binding(9) var<storage, read_write> vcache: array<f32>;
#endif

#include weights.wgsl


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

#if STAGED
const LANES: u32 = {{LANES}}u;
// Rows per thread and row groups: thread tid is lane tid % LANES of column group
// (tid / LANES) % CG of row group tid / (LANES * CG), and owns rows
// rgroup * RPT .. rgroup * RPT + RPT of its 4 columns (SROWS = RSPLIT * RPT >= ROWS).
const RPT: u32 = {{RPT}}u;
const RSPLIT: u32 = {{RSPLIT}}u;
const SROWS: u32 = RSPLIT * RPT;
// Column groups of 4 columns (COLS = 4 * CG).
const CG: u32 = WG / (LANES * RSPLIT);
// K values staged per pass, and their vec4s.
const CHUNK: u32 = LANES * KSTEP;
const CHUNK4: u32 = CHUNK / 4u;
// vec4s of one wide step (KSTEP / 4) and of workgroup memory; rows per reduction round
// (RG * NG = RPT, RG * WG <= XS).
const KV: u32 = {{KV}}u;
const XS: u32 = {{XS}}u;
const RG: u32 = {{RG}}u;

// The staged chunk, [row][v][lane] (a lane's step v of row r at r*CHUNK4 + v*LANES + lane);
// after the K loop, the threads' sums of RG of their rows, [row j][thread].
var<workgroup> xs: array<vec4<f32>, XS>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let k = wp.k;
    let lane = tid % LANES;
    let cgroup = (tid / LANES) % CG;
    let rbase = (tid / (LANES * CG)) * RPT;
    let split = wg.y;
    let k_begin = split * p.k_slice;
    let k_end = min(k, k_begin + p.k_slice);
    let rows = row_count();
    let row0 = first_row();
    // This thread's columns; past the matrix they re-read its last column (results dropped).
    let col0 = wg.x * COLS + cgroup * 4u;
    let last = p.n - 1u;
    let c0 = min(col0, last);
    let c1 = min(col0 + 1u, last);
    let c2 = min(col0 + 2u, last);
    let c3 = min(col0 + 3u, last);
    // A row group past the call's rows has nothing to add (uniform per thread).
    let has_rows = rbase < rows;
    var acc: array<vec4<f32>, RPT>;
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + CHUNK) {
        workgroupBarrier();
        for (var i = tid; i < SROWS * CHUNK4; i = i + WG) {
            let r = i / CHUNK4;
            let q = i % CHUNK4;
            let kk = k0 + q * 4u;
            var v = vec4<f32>(0.0);
            if (r < rows && kk < k_end) {
                v = x[((row0 + r) * k + kk) / 4u];
            }
            xs[r * CHUNK4 + (q % KV) * LANES + q / KV] = v;
        }
        workgroupBarrier();
        let ks = k0 + lane * KSTEP;
        if (has_rows && ks < k_end) {
            let wa = load_wide(c0, ks);
            let wb = load_wide(c1, ks);
            let wc = load_wide(c2, ks);
            let wd = load_wide(c3, ks);
#repeat V KV
            {
                let a = wide4(wa, {{V}}u);
                let b = wide4(wb, {{V}}u);
                let c = wide4(wc, {{V}}u);
                let d = wide4(wd, {{V}}u);
#repeat R RPT
                {
                    let xv = xs[(rbase + {{R}}u) * CHUNK4 + {{V}}u * LANES + lane];
                    acc[{{R}}] = acc[{{R}}] + vec4<f32>(dot(a, xv), dot(b, xv), dot(c, xv), dot(d, xv));
                }
#endrepeat
            }
#endrepeat
        }
    }
    // The lanes' sums, RG rows of every row group per round, added in lane order by one
    // thread per (row, column group).
#repeat G NG
    workgroupBarrier();
#repeat J RG
    xs[{{J}}u * WG + tid] = acc[{{G}}u * RG + {{J}}u];
#endrepeat
    workgroupBarrier();
    for (var o = tid; o < RG * RSPLIT * CG; o = o + WG) {
        let j = o / (RSPLIT * CG);
        // Row group and column group: thread (rest * LANES + l) held them.
        let rest = o % (RSPLIT * CG);
        let g = rest % CG;
        let r = (rest / CG) * RPT + {{G}}u * RG + j;
        if (r < rows) {
            var s = vec4<f32>(0.0);
            for (var l = 0u; l < LANES; l = l + 1u) {
                s = s + xs[j * WG + rest * LANES + l];
            }
            let col = wg.x * COLS + g * 4u;
            for (var c = 0u; c < 4u; c = c + 1u) {
                if (col + c < p.n) {
                    epilogue(r, col + c, split, s[c]);
                }
            }
        }
    }
#endrepeat
}
#else
const LANES: u32 = WG / COLS;

// Lane sums of four rows at a time: [row j][thread] (4 KiB of workgroup memory).
var<workgroup> red: array<f32, 4u * WG>;

@compute @workgroup_size(WG)
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
                    let o = ((row0 + r) * k) / 4u + c * 2u;
                    acc[r] = acc[r] + dot(w.lo, x[o]) + dot(w.hi, x[o + 1u]);
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
#endif
