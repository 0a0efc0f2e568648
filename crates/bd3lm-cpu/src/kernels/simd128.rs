//! The 128-bit kernels, written once over [`V128`] and instantiated for WebAssembly SIMD128,
//! aarch64 NEON and x86-64 SSE2. Every one of these is a baseline feature of its target (the
//! wasm build enables `simd128` in `.cargo/config.toml`), so the operations inline into the
//! kernels without run-time checks. On x86-64 the family also serves as "the native build
//! limited to 128-bit SIMD" that `docs/performance.md` compares the browser with.
//!
//! Without an int8 dot product in these instruction sets, int8 codes are widened to i16 and
//! multiplied pairwise into i32 (`madd`), exactly; there is no FMA, so f32 uses mul + add.

use super::{f16_to_f32, Input, QuantActs, WeightView, GROUP, MAX_TILE_ROWS};

/// 128-bit vector operations (lanes reinterpreted freely; all loads unaligned).
pub trait V128: Copy {
    fn zero() -> Self;
    /// 16 bytes.
    fn load(bytes: &[u8]) -> Self;
    /// 8 bytes into the low half, the high half zero.
    fn load_low(bytes: &[u8]) -> Self;
    fn splat_f32(x: f32) -> Self;
    fn add_f32(self, b: Self) -> Self;
    fn mul_f32(self, b: Self) -> Self;
    fn lanes_f32(self) -> [f32; 4];
    fn add_i32(self, b: Self) -> Self;
    fn i32_to_f32(self) -> Self;
    /// i16x8 · i16x8 → i32x4 of adjacent pair sums.
    fn madd_i16(self, b: Self) -> Self;
    /// i8x16 → two i16x8 (sign-extended).
    fn widen_i8(self) -> (Self, Self);
    /// u8x16 → two i16x8 (zero-extended).
    fn widen_u8(self) -> (Self, Self);
    /// u8x16 → (low nibbles, high nibbles) as u8x16.
    fn nibbles(self) -> (Self, Self);
    /// The four f16 values in the low 64 bits as f32x4 (subnormals, inf and NaN included).
    fn f16_low_to_f32(self) -> Self;
}

/// `2^112` as f32 bits: rescales an f16 exponent/mantissa shifted into f32 position.
const F16_RESCALE: u32 = 0x7780_0000;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod arch {
    use super::{F16_RESCALE, V128};
    use core::arch::wasm32::*;
    pub const NAME: &str = "simd128";
    pub const AVAILABLE: bool = true;
    pub type Vector = v128;

    impl V128 for v128 {
        #[inline(always)]
        fn zero() -> Self {
            i32x4_splat(0)
        }
        #[inline(always)]
        fn load(bytes: &[u8]) -> Self {
            let b = &bytes[..16];
            // SAFETY: 16 readable bytes; v128 loads need no alignment.
            unsafe { v128_load(b.as_ptr() as *const v128) }
        }
        #[inline(always)]
        fn load_low(bytes: &[u8]) -> Self {
            let b = &bytes[..8];
            // SAFETY: 8 readable bytes.
            unsafe { v128_load64_zero(b.as_ptr() as *const u64) }
        }
        #[inline(always)]
        fn splat_f32(x: f32) -> Self {
            f32x4_splat(x)
        }
        #[inline(always)]
        fn add_f32(self, b: Self) -> Self {
            f32x4_add(self, b)
        }
        #[inline(always)]
        fn mul_f32(self, b: Self) -> Self {
            f32x4_mul(self, b)
        }
        #[inline(always)]
        fn lanes_f32(self) -> [f32; 4] {
            [
                f32x4_extract_lane::<0>(self),
                f32x4_extract_lane::<1>(self),
                f32x4_extract_lane::<2>(self),
                f32x4_extract_lane::<3>(self),
            ]
        }
        #[inline(always)]
        fn add_i32(self, b: Self) -> Self {
            i32x4_add(self, b)
        }
        #[inline(always)]
        fn i32_to_f32(self) -> Self {
            f32x4_convert_i32x4(self)
        }
        #[inline(always)]
        fn madd_i16(self, b: Self) -> Self {
            i32x4_dot_i16x8(self, b)
        }
        #[inline(always)]
        fn widen_i8(self) -> (Self, Self) {
            (i16x8_extend_low_i8x16(self), i16x8_extend_high_i8x16(self))
        }
        #[inline(always)]
        fn widen_u8(self) -> (Self, Self) {
            (u16x8_extend_low_u8x16(self), u16x8_extend_high_u8x16(self))
        }
        #[inline(always)]
        fn nibbles(self) -> (Self, Self) {
            (v128_and(self, u8x16_splat(15)), u8x16_shr(self, 4))
        }
        #[inline(always)]
        fn f16_low_to_f32(self) -> Self {
            let h = u32x4_extend_low_u16x8(self);
            let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
            let em = i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13);
            let f = f32x4_mul(em, u32x4_splat(F16_RESCALE));
            let exp = v128_and(h, u32x4_splat(0x7c00));
            let inf_nan = i32x4_eq(exp, u32x4_splat(0x7c00));
            v128_or(
                v128_or(f, v128_and(inf_nan, u32x4_splat(0x7f80_0000))),
                sign,
            )
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod arch {
    use super::{F16_RESCALE, V128};
    use core::arch::x86_64::*;
    pub const NAME: &str = "sse2";
    pub const AVAILABLE: bool = true;
    pub type Vector = __m128i;

    #[inline(always)]
    fn splat_u32(x: u32) -> __m128i {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { _mm_set1_epi32(x as i32) }
    }

    impl V128 for __m128i {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe { _mm_setzero_si128() }
        }
        #[inline(always)]
        fn load(bytes: &[u8]) -> Self {
            let b = &bytes[..16];
            // SAFETY: 16 readable bytes; unaligned load.
            unsafe { _mm_loadu_si128(b.as_ptr() as *const __m128i) }
        }
        #[inline(always)]
        fn load_low(bytes: &[u8]) -> Self {
            let b = &bytes[..8];
            // SAFETY: 8 readable bytes.
            unsafe { _mm_loadl_epi64(b.as_ptr() as *const __m128i) }
        }
        #[inline(always)]
        fn splat_f32(x: f32) -> Self {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe { _mm_castps_si128(_mm_set1_ps(x)) }
        }
        #[inline(always)]
        fn add_f32(self, b: Self) -> Self {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe { _mm_castps_si128(_mm_add_ps(_mm_castsi128_ps(self), _mm_castsi128_ps(b))) }
        }
        #[inline(always)]
        fn mul_f32(self, b: Self) -> Self {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe { _mm_castps_si128(_mm_mul_ps(_mm_castsi128_ps(self), _mm_castsi128_ps(b))) }
        }
        #[inline(always)]
        fn lanes_f32(self) -> [f32; 4] {
            let mut out = [0f32; 4];
            // SAFETY: 16 writable bytes.
            unsafe { _mm_storeu_ps(out.as_mut_ptr(), _mm_castsi128_ps(self)) };
            out
        }
        #[inline(always)]
        fn add_i32(self, b: Self) -> Self {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe { _mm_add_epi32(self, b) }
        }
        #[inline(always)]
        fn i32_to_f32(self) -> Self {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe { _mm_castps_si128(_mm_cvtepi32_ps(self)) }
        }
        #[inline(always)]
        fn madd_i16(self, b: Self) -> Self {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe { _mm_madd_epi16(self, b) }
        }
        #[inline(always)]
        fn widen_i8(self) -> (Self, Self) {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe {
                (
                    _mm_srai_epi16(_mm_unpacklo_epi8(self, self), 8),
                    _mm_srai_epi16(_mm_unpackhi_epi8(self, self), 8),
                )
            }
        }
        #[inline(always)]
        fn widen_u8(self) -> (Self, Self) {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe {
                let z = _mm_setzero_si128();
                (_mm_unpacklo_epi8(self, z), _mm_unpackhi_epi8(self, z))
            }
        }
        #[inline(always)]
        fn nibbles(self) -> (Self, Self) {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe {
                let m = _mm_set1_epi8(15);
                (
                    _mm_and_si128(self, m),
                    _mm_and_si128(_mm_srli_epi16(self, 4), m),
                )
            }
        }
        #[inline(always)]
        fn f16_low_to_f32(self) -> Self {
            // SAFETY: SSE2 is part of the x86-64 baseline.
            unsafe {
                let h = _mm_unpacklo_epi16(self, _mm_setzero_si128());
                let sign = _mm_slli_epi32(_mm_and_si128(h, splat_u32(0x8000)), 16);
                let em = _mm_slli_epi32(_mm_and_si128(h, splat_u32(0x7fff)), 13);
                let f = _mm_castps_si128(_mm_mul_ps(
                    _mm_castsi128_ps(em),
                    _mm_castsi128_ps(splat_u32(F16_RESCALE)),
                ));
                let exp = _mm_and_si128(h, splat_u32(0x7c00));
                let inf_nan = _mm_cmpeq_epi32(exp, splat_u32(0x7c00));
                _mm_or_si128(
                    _mm_or_si128(f, _mm_and_si128(inf_nan, splat_u32(0x7f80_0000))),
                    sign,
                )
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    use super::{F16_RESCALE, V128};
    use core::arch::aarch64::*;
    pub const NAME: &str = "neon";
    pub const AVAILABLE: bool = true;
    pub type Vector = uint8x16_t;

    impl V128 for uint8x16_t {
        #[inline(always)]
        fn zero() -> Self {
            unsafe { vdupq_n_u8(0) }
        }
        #[inline(always)]
        fn load(bytes: &[u8]) -> Self {
            let b = &bytes[..16];
            // SAFETY: 16 readable bytes.
            unsafe { vld1q_u8(b.as_ptr()) }
        }
        #[inline(always)]
        fn load_low(bytes: &[u8]) -> Self {
            let b = &bytes[..8];
            // SAFETY: 8 readable bytes.
            unsafe { vcombine_u8(vld1_u8(b.as_ptr()), vdup_n_u8(0)) }
        }
        #[inline(always)]
        fn splat_f32(x: f32) -> Self {
            unsafe { vreinterpretq_u8_f32(vdupq_n_f32(x)) }
        }
        #[inline(always)]
        fn add_f32(self, b: Self) -> Self {
            unsafe {
                vreinterpretq_u8_f32(vaddq_f32(
                    vreinterpretq_f32_u8(self),
                    vreinterpretq_f32_u8(b),
                ))
            }
        }
        #[inline(always)]
        fn mul_f32(self, b: Self) -> Self {
            unsafe {
                vreinterpretq_u8_f32(vmulq_f32(
                    vreinterpretq_f32_u8(self),
                    vreinterpretq_f32_u8(b),
                ))
            }
        }
        #[inline(always)]
        fn lanes_f32(self) -> [f32; 4] {
            let mut out = [0f32; 4];
            // SAFETY: 16 writable bytes.
            unsafe { vst1q_f32(out.as_mut_ptr(), vreinterpretq_f32_u8(self)) };
            out
        }
        #[inline(always)]
        fn add_i32(self, b: Self) -> Self {
            unsafe {
                vreinterpretq_u8_s32(vaddq_s32(
                    vreinterpretq_s32_u8(self),
                    vreinterpretq_s32_u8(b),
                ))
            }
        }
        #[inline(always)]
        fn i32_to_f32(self) -> Self {
            unsafe { vreinterpretq_u8_f32(vcvtq_f32_s32(vreinterpretq_s32_u8(self))) }
        }
        #[inline(always)]
        fn madd_i16(self, b: Self) -> Self {
            unsafe {
                let (a, b) = (vreinterpretq_s16_u8(self), vreinterpretq_s16_u8(b));
                let lo = vmull_s16(vget_low_s16(a), vget_low_s16(b));
                let hi = vmull_high_s16(a, b);
                vreinterpretq_u8_s32(vpaddq_s32(lo, hi))
            }
        }
        #[inline(always)]
        fn widen_i8(self) -> (Self, Self) {
            unsafe {
                let s = vreinterpretq_s8_u8(self);
                (
                    vreinterpretq_u8_s16(vmovl_s8(vget_low_s8(s))),
                    vreinterpretq_u8_s16(vmovl_high_s8(s)),
                )
            }
        }
        #[inline(always)]
        fn widen_u8(self) -> (Self, Self) {
            unsafe {
                (
                    vreinterpretq_u8_u16(vmovl_u8(vget_low_u8(self))),
                    vreinterpretq_u8_u16(vmovl_high_u8(self)),
                )
            }
        }
        #[inline(always)]
        fn nibbles(self) -> (Self, Self) {
            unsafe { (vandq_u8(self, vdupq_n_u8(15)), vshrq_n_u8::<4>(self)) }
        }
        #[inline(always)]
        fn f16_low_to_f32(self) -> Self {
            unsafe {
                let h = vmovl_u16(vget_low_u16(vreinterpretq_u16_u8(self)));
                let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
                let em = vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff)));
                let f = vreinterpretq_u32_f32(vmulq_f32(
                    vreinterpretq_f32_u32(em),
                    vreinterpretq_f32_u32(vdupq_n_u32(F16_RESCALE)),
                ));
                let exp = vandq_u32(h, vdupq_n_u32(0x7c00));
                let inf_nan = vceqq_u32(exp, vdupq_n_u32(0x7c00));
                vreinterpretq_u8_u32(vorrq_u32(
                    vorrq_u32(f, vandq_u32(inf_nan, vdupq_n_u32(0x7f80_0000))),
                    sign,
                ))
            }
        }
    }
}

#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64",
    target_arch = "aarch64"
)))]
mod arch {
    pub const NAME: &str = "simd128";
    pub const AVAILABLE: bool = false;
}

pub use arch::{AVAILABLE, NAME};

#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64",
    target_arch = "aarch64"
))]
pub(super) fn matmul_tile(
    w: WeightView<'_>,
    k: usize,
    first: usize,
    count: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    tile::<arch::Vector>(w, k, first, count, input, out)
}

#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64",
    target_arch = "aarch64"
)))]
pub(super) fn matmul_tile(
    w: WeightView<'_>,
    k: usize,
    first: usize,
    count: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    super::portable::matmul_tile(w, k, first, count, input, out)
}

#[allow(dead_code)] // unused on targets without a 128-bit family
#[inline(always)]
fn tile<V: V128>(
    w: WeightView<'_>,
    k: usize,
    first: usize,
    count: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    let rows = input.rows();
    match (w, input) {
        (WeightView::F32(v), Input::F32 { x, .. }) => {
            for i in 0..count {
                let o = first + i;
                let wr = &v[o * k..(o + 1) * k];
                for r in 0..rows {
                    out[i * rows + r] = dot_f32::<V>(wr, &x[r * k..(r + 1) * k]);
                }
            }
        }
        (WeightView::F16(v), Input::F32 { x, .. }) => {
            let mut row = vec![0f32; k];
            for i in 0..count {
                let o = first + i;
                f16_row::<V>(&v[o * k..(o + 1) * k], &mut row);
                for r in 0..rows {
                    out[i * rows + r] = dot_f32::<V>(&row, &x[r * k..(r + 1) * k]);
                }
            }
        }
        (WeightView::Q8 { q, scales, .. }, Input::Quant(a)) => {
            q8_tile::<V>(q, scales, k, first, count, a, out)
        }
        (WeightView::Q4 { q, scales, mins }, Input::Quant(a)) => {
            q4_tile::<V>(q, scales, mins, k, first, count, a, out)
        }
        _ => panic!("kernel input does not suit the weight scheme"),
    }
}

#[inline(always)]
fn f32_bytes(x: &[f32]) -> &[u8] {
    bytemuck::cast_slice(x)
}

#[inline(always)]
fn sum_lanes<V: V128>(v: V) -> f32 {
    let l = v.lanes_f32();
    (l[0] + l[2]) + (l[1] + l[3])
}

#[inline(always)]
fn dot_f32<V: V128>(a: &[f32], b: &[f32]) -> f32 {
    let (mut acc0, mut acc1) = (V::zero(), V::zero());
    let n8 = a.len() / 8 * 8;
    let (ab, bb) = (f32_bytes(&a[..n8]), f32_bytes(&b[..n8]));
    for c in 0..n8 / 8 {
        let at = c * 32;
        acc0 = acc0.add_f32(V::load(&ab[at..]).mul_f32(V::load(&bb[at..])));
        acc1 = acc1.add_f32(V::load(&ab[at + 16..]).mul_f32(V::load(&bb[at + 16..])));
    }
    let mut tail = 0f32;
    for (x, y) in a[n8..].iter().zip(&b[n8..]) {
        tail += x * y;
    }
    sum_lanes(acc0.add_f32(acc1)) + tail
}

#[inline(always)]
fn f16_row<V: V128>(src: &[u16], dst: &mut [f32]) {
    let n4 = src.len() / 4 * 4;
    let bytes: &[u8] = bytemuck::cast_slice(&src[..n4]);
    for c in 0..n4 / 4 {
        dst[c * 4..c * 4 + 4]
            .copy_from_slice(&V::load_low(&bytes[c * 8..]).f16_low_to_f32().lanes_f32());
    }
    for (d, &s) in dst[n4..].iter_mut().zip(&src[n4..]) {
        *d = f16_to_f32(s);
    }
}

/// i32x4 partial sums of one group: four i16x8 weight vectors against the row's codes.
#[inline(always)]
fn group_dot<V: V128>(w: &[V; 4], codes: &[i16]) -> V {
    let c: &[u8] = bytemuck::cast_slice(&codes[..GROUP]);
    let p0 = w[0].madd_i16(V::load(c));
    let p1 = w[1].madd_i16(V::load(&c[16..]));
    let p2 = w[2].madd_i16(V::load(&c[32..]));
    let p3 = w[3].madd_i16(V::load(&c[48..]));
    p0.add_i32(p1).add_i32(p2.add_i32(p3))
}

#[inline(always)]
fn q8_tile<V: V128>(
    q: &[i8],
    scales: &[u16],
    k: usize,
    first: usize,
    count: usize,
    a: &QuantActs,
    out: &mut [f32],
) {
    let (rows, groups) = (a.rows, k / GROUP);
    let bytes: &[u8] = bytemuck::cast_slice(q);
    let mut acc = [V::zero(); MAX_TILE_ROWS];
    for i in 0..count {
        let o = first + i;
        acc[..rows].fill(V::zero());
        for g in 0..groups {
            let at = o * k + g * GROUP;
            let (w0, w1) = V::load(&bytes[at..]).widen_i8();
            let (w2, w3) = V::load(&bytes[at + 16..]).widen_i8();
            let wv = [w0, w1, w2, w3];
            let ws = f16_to_f32(scales[o * groups + g]);
            for (r, acc) in acc[..rows].iter_mut().enumerate() {
                let dot = group_dot(&wv, &a.q[r * k + g * GROUP..]);
                let s = V::splat_f32(ws * a.group_scale(r, g));
                *acc = acc.add_f32(dot.i32_to_f32().mul_f32(s));
            }
        }
        for (r, acc) in acc[..rows].iter().enumerate() {
            out[i * rows + r] = sum_lanes(*acc);
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn q4_tile<V: V128>(
    q: &[u8],
    scales: &[u16],
    mins: &[u16],
    k: usize,
    first: usize,
    count: usize,
    a: &QuantActs,
    out: &mut [f32],
) {
    let (rows, groups) = (a.rows, k / GROUP);
    let mut acc = [V::zero(); MAX_TILE_ROWS];
    let mut min_acc = [0f32; MAX_TILE_ROWS];
    for i in 0..count {
        let o = first + i;
        acc[..rows].fill(V::zero());
        min_acc[..rows].fill(0.0);
        for g in 0..groups {
            let (lo, hi) = V::load(&q[(o * k + g * GROUP) / 2..]).nibbles();
            let (w0, w1) = lo.widen_u8();
            let (w2, w3) = hi.widen_u8();
            let wv = [w0, w1, w2, w3];
            let ws = f16_to_f32(scales[o * groups + g]);
            let wm = f16_to_f32(mins[o * groups + g]);
            for r in 0..rows {
                let dot = group_dot(&wv, &a.q[r * k + g * GROUP..]);
                let s = V::splat_f32(ws * a.group_scale(r, g));
                acc[r] = acc[r].add_f32(dot.i32_to_f32().mul_f32(s));
                min_acc[r] += wm * a.scale_sum[r * groups + g];
            }
        }
        for r in 0..rows {
            out[i * rows + r] = sum_lanes(acc[r]) + min_acc[r];
        }
    }
}
