// Weight decoding shared by the kernels that read model matrices (included by matmul.wgsl and
// embed.wgsl). A matrix [rows, K] lives in one or two storage buffers (`w0`, and `w1` for rows
// >= split when one binding would exceed 128 MiB). Per format (compile-time FORMAT_*):
//   F32: K f32 words per row.
//   F16: K/2 words per row, two f16 per word (element 2i in the low half).
//   Q8:  K/4 words per row (int8, element 4i in the low byte); then one f32 scale per group of
//        32 at word `scale_off`: x = q * scale.
//   Q4:  K/8 words per row (nibbles, element 8i in the low nibble); then (scale, min) f32 pairs
//        per group at word `scale_off`: x = q * scale + min.
// `load8` returns 8 consecutive values of a row as two vec4s. The including shader declares
// `wp: WeightParams` (uniforms.wgsl) and the bindings `w0`, `w1`.
#flags FORMAT_F32 FORMAT_F16 FORMAT_Q8 FORMAT_Q4

fn w_word(second: bool, i: u32) -> u32 {
    if (second) {
        return w1[i >> 2u][i & 3u];
    }
    return w0[i >> 2u][i & 3u];
}

fn w_vec(second: bool, i: u32) -> vec4<u32> {
    if (second) {
        return w1[i];
    }
    return w0[i];
}

fn sext8(word: u32, byte: u32) -> f32 {
    return f32(bitcast<i32>(word << (24u - 8u * byte)) >> 24u);
}

struct Eight {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// Values k = 8*c8 .. 8*c8+7 of matrix row `row`.
fn load8(row: u32, c8: u32) -> Eight {
    let second = row >= wp.split_row;
    var r = row;
    var scale_off = wp.scale_off0;
    if (second) {
        r = row - wp.split_row;
        scale_off = wp.scale_off1;
    }
    let k = wp.k;
    var e: Eight;
#if FORMAT_F32
    let base = (r * k) / 4u + c8 * 2u;
    e.lo = bitcast<vec4<f32>>(w_vec(second, base));
    e.hi = bitcast<vec4<f32>>(w_vec(second, base + 1u));
#endif
#if FORMAT_F16
    let v = w_vec(second, (r * k) / 8u + c8);
    let a = unpack2x16float(v.x);
    let b = unpack2x16float(v.y);
    let c = unpack2x16float(v.z);
    let d = unpack2x16float(v.w);
    e.lo = vec4<f32>(a.x, a.y, b.x, b.y);
    e.hi = vec4<f32>(c.x, c.y, d.x, d.y);
#endif
#if FORMAT_Q8
    let word = (r * k) / 4u + c8 * 2u;
    let w_a = w_word(second, word);
    let w_b = w_word(second, word + 1u);
    let s = bitcast<f32>(w_word(second, scale_off + (r * k) / 32u + c8 / 4u));
    e.lo = vec4<f32>(sext8(w_a, 0u), sext8(w_a, 1u), sext8(w_a, 2u), sext8(w_a, 3u)) * s;
    e.hi = vec4<f32>(sext8(w_b, 0u), sext8(w_b, 1u), sext8(w_b, 2u), sext8(w_b, 3u)) * s;
#endif
#if FORMAT_Q4
    let w = w_word(second, (r * k) / 8u + c8);
    let g = scale_off + ((r * k) / 32u + c8 / 4u) * 2u;
    let s = bitcast<f32>(w_word(second, g));
    let m = bitcast<f32>(w_word(second, g + 1u));
    let lo = vec4<f32>(f32(w & 15u), f32((w >> 4u) & 15u), f32((w >> 8u) & 15u), f32((w >> 12u) & 15u));
    let hi = vec4<f32>(f32((w >> 16u) & 15u), f32((w >> 20u) & 15u), f32((w >> 24u) & 15u), f32(w >> 28u));
    e.lo = lo * s + vec4<f32>(m);
    e.hi = hi * s + vec4<f32>(m);
#endif
    return e;
}

// Wide steps (matmul.wgsl's staged path): KSTEP consecutive values of a row, k0 a multiple of
// KSTEP and K a multiple of KSTEP, from one vec4<u32> word (two for F32), so that a lane's
// weights come in 16-byte loads: F32 and F16 8 values, Q8 16, Q4 32 (one scale group).
#if FORMAT_F32
const KSTEP: u32 = 8u;
#endif
#if FORMAT_F16
const KSTEP: u32 = 8u;
#endif
#if FORMAT_Q8
const KSTEP: u32 = 16u;
#endif
#if FORMAT_Q4
const KSTEP: u32 = 32u;
#endif

struct Wide {
    a: vec4<u32>,
    b: vec4<u32>,
    s: f32,
    m: f32,
}

fn load_wide(row: u32, k0: u32) -> Wide {
    let second = row >= wp.split_row;
    var r = row;
    var scale_off = wp.scale_off0;
    if (second) {
        r = row - wp.split_row;
        scale_off = wp.scale_off1;
    }
    // Position of the step in the binding, in values.
    let at = r * wp.k + k0;
    var w: Wide;
#if FORMAT_F32
    w.a = w_vec(second, at / 4u);
    w.b = w_vec(second, at / 4u + 1u);
#endif
#if FORMAT_F16
    w.a = w_vec(second, at / 8u);
#endif
#if FORMAT_Q8
    w.a = w_vec(second, at / 16u);
    w.s = bitcast<f32>(w_word(second, scale_off + at / 32u));
#endif
#if FORMAT_Q4
    w.a = w_vec(second, at / 32u);
    w.s = bitcast<f32>(w_word(second, scale_off + (at / 32u) * 2u));
    w.m = bitcast<f32>(w_word(second, scale_off + (at / 32u) * 2u + 1u));
#endif
    return w;
}

// Values 4v .. 4v+3 of a wide step (`v` is a constant where the caller is unrolled).
fn wide4(w: Wide, v: u32) -> vec4<f32> {
    var out = vec4<f32>(0.0);
#if FORMAT_F32
    out = bitcast<vec4<f32>>(select(w.b, w.a, v == 0u));
#endif
#if FORMAT_F16
    let lo = unpack2x16float(w.a[2u * v]);
    let hi = unpack2x16float(w.a[2u * v + 1u]);
    out = vec4<f32>(lo.x, lo.y, hi.x, hi.y);
#endif
#if FORMAT_Q8
    let x = w.a[v];
    out = vec4<f32>(sext8(x, 0u), sext8(x, 1u), sext8(x, 2u), sext8(x, 3u)) * w.s;
#endif
#if FORMAT_Q4
    let x = w.a[v / 2u] >> (16u * (v % 2u));
    let q = vec4<f32>(f32(x & 15u), f32((x >> 4u) & 15u), f32((x >> 8u) & 15u), f32((x >> 12u) & 15u));
    out = q * w.s + vec4<f32>(w.m);
#endif
    return out;
}
