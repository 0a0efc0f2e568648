// Embedding gather (spec §4.1), one workgroup per row of the call: x[r] = E[token[r]],
// decoding the table's storage format (weights.wgsl), then the first layer's LayerNorm +
// modulation of the row into xn (rownorm.wgsl) for the QKV projection. A call's rows are the
// clean block's (Step.clean_rows of them, from `clean_tokens`) and then the denoised block's
// (from `tokens`). The grid has exactly one workgroup per row, so no row past the call is
// ever written.

#include uniforms.wgsl

@group(0) @binding(0) var<uniform> wp: WeightParams;
@group(0) @binding(1) var<uniform> np: NormParams;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> vecs: array<f32>;
@group(0) @binding(6) var<storage, read_write> x: array<f32>;
@group(0) @binding(7) var<storage, read_write> xn: array<f32>;
@group(0) @binding(8) var<uniform> step: Step;
// The clean block a store pass (alone or folded) appends to the cache.
@group(0) @binding(9) var<storage, read> clean_tokens: array<u32>;

#include weights.wgsl
#include rownorm.wgsl

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.x;
    let k = wp.k;
    var token: u32;
    if (row < step.clean_rows) {
        token = clean_tokens[row];
    } else {
        token = tokens[row - step.clean_rows];
    }
    for (var c8 = tid; c8 < k / 8u; c8 = c8 + 256u) {
        let e = load8(token, c8);
        let o = row * k + c8 * 8u;
        x[o] = e.lo.x;
        x[o + 1u] = e.lo.y;
        x[o + 2u] = e.lo.z;
        x[o + 3u] = e.lo.w;
        x[o + 4u] = e.hi.x;
        x[o + 5u] = e.hi.y;
        x[o + 6u] = e.hi.z;
        x[o + 7u] = e.hi.w;
    }
    // Other threads wrote the elements this one normalises.
    storageBarrier();
    normalise_row(tid, row);
}
