// SplitMix64 (the fixtures' uniform stream, spec §9.5) on (lo, hi) u32 pairs: WGSL has no
// 64-bit integers. Included by sampling.wgsl.

fn mulhi32(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let ll = a0 * b0;
    let lh = a0 * b1;
    let hl = a1 * b0;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    return a1 * b1 + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

fn mul64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(a.x * b.x, mulhi32(a.x, b.x) + a.x * b.y + a.y * b.x);
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn xor_shr(z: vec2<u32>, s: u32) -> vec2<u32> {
    return z ^ vec2<u32>((z.x >> s) | (z.y << (32u - s)), z.y >> s);
}

fn mix64(z0: vec2<u32>) -> vec2<u32> {
    var z = mul64(xor_shr(z0, 30u), vec2<u32>(0x1CE4E5B9u, 0xBF58476Du));
    z = mul64(xor_shr(z, 27u), vec2<u32>(0x133111EBu, 0x94D049BBu));
    return xor_shr(z, 31u);
}

