// Block attention with a KV cache (spec §5, §6.3, §7): the B queries of a block attend,
// unmasked, to every key of their window and to the block's own keys (bidirectional inside
// the block). The caches hold un-rotated K/V in a ring of Step.ring slots; RoPE is applied
// here with window-relative positions (window key j -> position j, block row r -> position
// cached + r), which re-bases positions after the window slides exactly as the reference does.
//
// A call has one or two groups of B rows (uniforms.wgsl): a folded call's clean block attends
// over the window before it is appended (block-causal: never to the denoised rows), the
// denoised block over the window after, each with its own start, fill and split; workgroup z
// is the group. Each group's arithmetic is exactly that of a call of its own.
//
// Flash-decoding in two kernels. `partial`: one workgroup per (head, split), a split being
// Step.kv_split consecutive keys of the window; an online softmax over tiles of KT keys (K
// rotated and V staged in workgroup memory once per tile, row strides padded against bank
// conflicts, the softmax's max and sum reduced over TPR lanes per row); it writes the split's
// unnormalised output with its running max and sum. `combine`: one
// workgroup per row of the call merges its group's splits in order (deterministic, no atomics) and
// normalises. The host sizes the splits per window: the whole window on CPU adapters (one
// split), enough splits on GPUs that heads x splits keeps every compute unit busy. A group
// whose window is one split needs no merge: `partial` normalises and writes its rows itself
// (exactly what `combine` would: every weight is exp(0) = 1), `combine` skips them, and the
// host records no combine when no group of the call has more than one split.

#include uniforms.wgsl

// Rows of one group (the block size), and of a whole call at most (the partials' stride).
const B: u32 = {{ROWS}}u;
const MAXR: u32 = {{MAX_ROWS}}u;
const D: u32 = {{HEAD_DIM}}u;
const HALF: u32 = D / 2u;
// Keys per tile, chosen so all workgroup memory fits WebGPU's default 16 KiB.
const KT: u32 = {{KT}}u;
// vec4 accumulators per thread: B * D / 4 outputs over 256 threads.
const ACC: u32 = (B * D / 4u + 255u) / 256u;
// Row strides of the staged queries and keys, padded by one float: the score loop's lanes
// step over keys (and rows), and an unpadded stride of D floats would put them all in one
// memory bank.
const QD: u32 = D + 1u;
const KD: u32 = D + 1u;
// Threads per row of the softmax (a power of two, TPR * B <= 256).
const TPR: u32 = {{TPR}}u;

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kcache: array<f32>;
@group(0) @binding(4) var<storage, read> vcache: array<vec4<f32>>;
// [n_ctx, HALF] cos values followed by [n_ctx, HALF] sin values.
@group(0) @binding(5) var<storage, read> rope: array<f32>;
// Per (split, head, row): the unnormalised output [D] and (running max, running sum).
@group(0) @binding(6) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> part_ml: array<f32>;
// [call rows, H] attention output (combine; partial for a group of one split).
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;

var<workgroup> qs: array<f32, B * QD>;
var<workgroup> kt: array<f32, KT * KD>;
// The tile's V rows, staged once and read by every row's accumulators.
var<workgroup> vt: array<vec4<f32>, KT * D / 4u>;
var<workgroup> sc: array<f32, B * KT>;
var<workgroup> m: array<f32, B>;
var<workgroup> l: array<f32, B>;
var<workgroup> alpha: array<f32, B>;
// The softmax's per-row tree reductions: [row][TPR].
var<workgroup> red: array<f32, 256>;

// Element e of a head vector rotated to position `pos` (rotate-half convention).
fn rotate(x_e: f32, x_partner: f32, e: u32, pos: u32) -> f32 {
    let i = e % HALF;
    let c = rope[pos * HALF + i];
    let s = rope[step.n_ctx * HALF + pos * HALF + i];
    if (e < HALF) {
        return x_e * c - x_partner * s;
    }
    return x_e * c + x_partner * s;
}

fn partner(e: u32) -> u32 {
    if (e < HALF) {
        return e + HALF;
    }
    return e - HALF;
}

// One group of B rows of the call and its window.
struct Group {
    // First row of the group in the call.
    row0: u32,
    cached: u32,
    ring_start: u32,
    kv_split: u32,
}

// Group `g` of the call (workgroup z): the clean block first when the call has one.
fn group(g: u32) -> Group {
    if (g == 0u && step.clean_rows > 0u) {
        return Group(0u, step.clean_cached, step.clean_ring_start, step.clean_kv_split);
    }
    return Group(step.clean_rows, step.cached, step.ring_start, step.kv_split);
}

// The group of row `r` of the call.
fn group_of(r: u32) -> Group {
    if (r < step.clean_rows) {
        return group(0u);
    }
    return group(1u);
}

// Splits of a group's window.
fn splits(g: Group) -> u32 {
    return (g.cached + B + g.kv_split - 1u) / g.kv_split;
}

// Tree reduction (max or sum) of red[r * TPR ..][TPR] for every row at once; called from
// uniform control flow, the result left in red[r * TPR].
fn reduce_rows(tid: u32, take_max: bool) {
    for (var s = TPR / 2u; s > 0u; s = s >> 1u) {
        let lane = tid % TPR;
        if (tid < B * TPR && lane < s) {
            let a = red[tid];
            let b = red[tid + s];
            if (take_max) {
                red[tid] = max(a, b);
            } else {
                red[tid] = a + b;
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn partial(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let head = wg.x;
    let split = wg.y;
    let g = group(wg.z);
    if (split >= splits(g)) {
        // The other group's window has more splits.
        return;
    }
    let h = p.hidden;
    let j_begin = split * g.kv_split;
    let j_end = min(g.cached + B, j_begin + g.kv_split);
    for (var i = tid; i < B * D; i = i + 256u) {
        let r = i / D;
        let e = i % D;
        let base = (g.row0 + r) * h + head * D;
        qs[r * QD + e] = rotate(q[base + e], q[base + partner(e)], e, g.cached + r);
    }
    if (tid < B) {
        m[tid] = -3.4e38;
        l[tid] = 0.0;
    }
    var acc: array<vec4<f32>, ACC>;
    for (var a = 0u; a < ACC; a = a + 1u) {
        acc[a] = vec4<f32>(0.0);
    }
    // The softmax lanes: row `sr`, lane `sl` of TPR.
    let sr = tid / TPR;
    let sl = tid % TPR;
    workgroupBarrier();
    for (var j0 = j_begin; j0 < j_end; j0 = j0 + KT) {
        let tl = min(KT, j_end - j0);
        // Ring slot of the tile's first key; the others follow it, wrapping once at most.
        let slot0 = (g.ring_start + j0) % step.ring;
        for (var i = tid; i < tl * D; i = i + 256u) {
            let jj = i / D;
            let e = i % D;
            var slot = slot0 + jj;
            if (slot >= step.ring) {
                slot = slot - step.ring;
            }
            let base = p.cache_layer_off + slot * h + head * D;
            kt[jj * KD + e] = rotate(kcache[base + e], kcache[base + partner(e)], e, j0 + jj);
            if (e % 4u == 0u) {
                vt[jj * (D / 4u) + e / 4u] = vcache[base / 4u + e / 4u];
            }
        }
        workgroupBarrier();
        for (var i = tid; i < B * tl; i = i + 256u) {
            let r = i / tl;
            let jj = i % tl;
            var s = 0.0;
            for (var e = 0u; e < D; e = e + 1u) {
                s = s + qs[r * QD + e] * kt[jj * KD + e];
            }
            sc[r * KT + jj] = s * p.scale;
        }
        workgroupBarrier();
        // Online softmax, TPR lanes per row: the tile's max, then its exponentials and sum.
        var mx = -3.4e38;
        if (sr < B) {
            for (var jj = sl; jj < tl; jj = jj + TPR) {
                mx = max(mx, sc[sr * KT + jj]);
            }
        }
        red[tid] = mx;
        workgroupBarrier();
        reduce_rows(tid, true);
        var m_new = 0.0;
        var sum = 0.0;
        if (sr < B) {
            m_new = max(m[sr], red[sr * TPR]);
            for (var jj = sl; jj < tl; jj = jj + TPR) {
                let e = exp(sc[sr * KT + jj] - m_new);
                sc[sr * KT + jj] = e;
                sum = sum + e;
            }
        }
        workgroupBarrier();
        red[tid] = sum;
        workgroupBarrier();
        reduce_rows(tid, false);
        if (sr < B && sl == 0u) {
            let a = exp(m[sr] - m_new);
            l[sr] = l[sr] * a + red[sr * TPR];
            m[sr] = m_new;
            alpha[sr] = a;
        }
        workgroupBarrier();
        for (var a = 0u; a < ACC; a = a + 1u) {
            let idx = tid + a * 256u;
            if (idx < B * D / 4u) {
                let r = idx / (D / 4u);
                let d4 = idx % (D / 4u);
                var v = acc[a] * alpha[r];
                for (var jj = 0u; jj < tl; jj = jj + 1u) {
                    v = v + sc[r * KT + jj] * vt[jj * (D / 4u) + d4];
                }
                acc[a] = v;
            }
        }
        workgroupBarrier();
    }
    if (splits(g) == 1u) {
        for (var a = 0u; a < ACC; a = a + 1u) {
            let idx = tid + a * 256u;
            if (idx < B * D / 4u) {
                let r = idx / (D / 4u);
                let d4 = idx % (D / 4u);
                out[((g.row0 + r) * h) / 4u + head * (D / 4u) + d4] = acc[a] / l[r];
            }
        }
        return;
    }
    let part = split * p.heads + head;
    for (var a = 0u; a < ACC; a = a + 1u) {
        let idx = tid + a * 256u;
        if (idx < B * D / 4u) {
            part_o[part * (MAXR * D / 4u) + g.row0 * (D / 4u) + idx] = acc[a];
        }
    }
    if (tid < B) {
        part_ml[(part * MAXR + g.row0 + tid) * 2u] = m[tid];
        part_ml[(part * MAXR + g.row0 + tid) * 2u + 1u] = l[tid];
    }
}

@compute @workgroup_size(256)
fn combine(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let r = wg.x;
    let h = p.hidden;
    let n_splits = splits(group_of(r));
    if (n_splits == 1u) {
        // Written by `partial`.
        return;
    }
    for (var i = tid; i < h / 4u; i = i + 256u) {
        let head = i / (D / 4u);
        let d4 = i % (D / 4u);
        var mx = -3.4e38;
        for (var s = 0u; s < n_splits; s = s + 1u) {
            mx = max(mx, part_ml[((s * p.heads + head) * MAXR + r) * 2u]);
        }
        var sum = 0.0;
        var o = vec4<f32>(0.0);
        for (var s = 0u; s < n_splits; s = s + 1u) {
            let part = s * p.heads + head;
            let w = exp(part_ml[(part * MAXR + r) * 2u] - mx);
            sum = sum + part_ml[(part * MAXR + r) * 2u + 1u] * w;
            o = o + part_o[part * (MAXR * D / 4u) + r * (D / 4u) + d4] * w;
        }
        out[(r * h) / 4u + i] = o / sum;
    }
}
