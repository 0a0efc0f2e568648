// Embedding gather (spec §4.1): x[r] = E[token[r]] for the B tokens of the block, decoding
// the table's storage format (weights.wgsl).

struct WeightParams {
    k: u32,
    split_row: u32,
    scale_off0: u32,
    scale_off1: u32,
}

@group(0) @binding(0) var<uniform> wp: WeightParams;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

#include weights.wgsl

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let chunks = wp.k / 8u;
    let i = gid.x;
    if (i >= arrayLength(&tokens) * chunks) {
        return;
    }
    let r = i / chunks;
    let c8 = i % chunks;
    let e = load8(tokens[r], c8);
    let o = r * wp.k + c8 * 8u;
    x[o] = e.lo.x;
    x[o + 1u] = e.lo.y;
    x[o + 2u] = e.lo.z;
    x[o + 3u] = e.lo.w;
    x[o + 4u] = e.hi.x;
    x[o + 5u] = e.hi.y;
    x[o + 6u] = e.hi.z;
    x[o + 7u] = e.hi.w;
}
