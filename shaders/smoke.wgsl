// Smoke kernels that prove the toolchain end to end (native lavapipe and browser WebGPU):
// a vectorised add and a workgroup-shared tree reduction, checked against CPU loops.

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i < arrayLength(&out)) {
        out[i] = a[i] + b[i];
    }
}

var<workgroup> partial: array<f32, 256>;

// Sums `a` (as scalars) per workgroup of 256 threads; out[wg].x = the group's sum.
@compute @workgroup_size(256)
fn reduce_sum(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let i = wg.x * 256u + tid;
    var v = 0.0;
    if (i < arrayLength(&a)) {
        let x = a[i];
        v = (x.x + x.y) + (x.z + x.w);
    }
    partial[tid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (tid < s) {
            partial[tid] = partial[tid] + partial[tid + s];
        }
        workgroupBarrier();
    }
    if (tid == 0u) {
        out[wg.x] = vec4<f32>(partial[0], 0.0, 0.0, 0.0);
    }
}

// One thread bumps a counter: a dispatch that does nothing but depend on the previous one
// (a write after write), so a chain of them measures the GPU's dispatch floor.
@compute @workgroup_size(1)
fn tick() {
    out[0] = out[0] + vec4<f32>(1.0);
}
