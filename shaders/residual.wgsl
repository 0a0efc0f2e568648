// The residual update after a projection split along K (attention out, MLP out), one
// workgroup per row of the call: x += gate * (sum of the K splits' partial sums [+ bias]), the
// splits added in order (deterministic, no atomics), then the LayerNorm + modulation of the
// next consumer (the next layer's attention or MLP, or the LM head) written to xn once per
// row (rownorm.wgsl).
//   BIAS: the branch has a bias (MLP out).
#flags BIAS

#include uniforms.wgsl

// Rows of the partial sums' layout [split, ROWS, n]: the most a call has (2B).
const ROWS: u32 = {{ROWS}}u;

@group(0) @binding(0) var<uniform> np: NormParams;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read> vecs: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> xn: array<f32>;

#include rownorm.wgsl

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.x;
    let n = np.n;
    for (var c = tid; c < n; c = c + 256u) {
        var s = 0.0;
        // The bound is never above the array's length; taking the min keeps the loop bound from
        // being a pure uniform: with `np.splits` alone, Mesa lavapipe 22.3 (likely its inlining
        // of uniforms that bound loops) kept ~250 KB and spent ~0.7 ms more per dispatch, until
        // the device was destroyed: ~50 MB per generation (docs/reliability.md, "Long runs").
        for (var sp = 0u; sp < min(np.splits, arrayLength(&partials)); sp = sp + 1u) {
            s = s + partials[(sp * ROWS + row) * n + c];
        }
#if BIAS
        s = s + vecs[np.bias_off + c];
#endif
        x[row * n + c] = x[row * n + c] + vecs[np.gate_off + c] * s;
    }
    normalise_row(tid, row);
}
