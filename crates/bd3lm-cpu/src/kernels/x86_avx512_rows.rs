//! q8 and q4 on AVX-512 VNNI for calls of few rows (the LM head of the drawn row): 16 outputs
//! at a time, each group's products per output in a vector (`vpdpwssd` on the 16-bit q8
//! codes, `vpdpbusd` on q4's, two outputs per register), the 16 vectors then summed into one
//! vector of 16 exact group dot products by a transposing tree of adds, and the group scales
//! applied to the 16 outputs at once. The arithmetic per output and row is the portable
//! kernels' (see `x86_avx512_quant.rs`).

use super::x86_avx2::f16_row;
use super::{QuantActs, GROUP, MAX_TILE_ROWS};
use core::arch::x86_64::*;

/// Outputs per block (one per lane of the summed vector).
const BLOCK: usize = 16;

/// Slot of output `j` among the 16 summed vectors: the tree leaves output `SLOT[j]`'s sum in
/// lane `j` (the tree transposes a 4 × 4 arrangement).
const SLOT: [usize; BLOCK] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// Halves each of `a` and `b` (128-bit lanes 0+2, 1+3): lanes 0–7 hold `a`'s partial sums,
/// lanes 8–15 `b`'s.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn halve_pair(a: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0x44>(a, b),
        _mm512_shuffle_i32x4::<0xEE>(a, b),
    )
}

/// Eight vectors, each two slots' partial sums (slot `2i` in lanes 0–7 of `s[i]`, slot
/// `2i + 1` in lanes 8–15), to one vector whose lane `4 L + m` is the sum of slot `4 m + L`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn transpose_sum(s: [__m512i; 8]) -> __m512i {
    let quarter = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0x88>(a, b),
            _mm512_shuffle_i32x4::<0xDD>(a, b),
        )
    };
    // u[m]'s 128-bit lane L: slot 4m + L, four partial sums.
    let u = [
        quarter(s[0], s[1]),
        quarter(s[2], s[3]),
        quarter(s[4], s[5]),
        quarter(s[6], s[7]),
    ];
    let pairs = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    };
    let (w0, w1) = (pairs(u[0], u[1]), pairs(u[2], u[3]));
    _mm512_add_epi32(_mm512_unpacklo_epi64(w0, w1), _mm512_unpackhi_epi64(w0, w1))
}

/// Requests the cache lines of group `g` of the next block's rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn prefetch_next(base: *const u8, len: usize, row_bytes: usize, next: usize, at: usize) {
    for j in 0..BLOCK {
        let p = (next + j) * row_bytes + at;
        if p < len {
            // SAFETY: prefetches never fault; the address is inside the matrix anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(p) as *const i8) };
        }
    }
}

/// One output's products of one group with the codes `c` (16 partial sums), zero unless
/// `present`: the 32 weight codes at `q + at`, widened to 16 bits.
///
/// # Safety
/// When `present`, 32 bytes at `q + at` must be readable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn q8_slot(q: *const i8, at: usize, present: bool, c: __m512i) -> __m512i {
    if !present {
        return _mm512_setzero_si512();
    }
    // SAFETY: as the caller guarantees.
    let w = unsafe { _mm512_cvtepi8_epi16(_mm256_loadu_si256(q.add(at) as *const __m256i)) };
    _mm512_dpwssd_epi32(_mm512_setzero_si512(), w, c)
}

/// One output's 16 bytes of packed q4 codes of one group at `q + at`, zero unless `present`.
///
/// # Safety
/// When `present`, 16 bytes at `q + at` must be readable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn q4_slot(q: *const u8, at: usize, present: bool) -> __m128i {
    if !present {
        return _mm_setzero_si128();
    }
    // SAFETY: as the caller guarantees.
    unsafe { _mm_loadu_si128(q.add(at) as *const __m128i) }
}

/// `[groups, BLOCK]` f32 values of the block's outputs `o0..o0 + n` (zero past `n`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn block_values(src: &[u16], groups: usize, o0: usize, n: usize, row: &mut [f32], out: &mut [f32]) {
    out.fill(0.0);
    for j in 0..n {
        f16_row(
            &src[(o0 + j) * groups..(o0 + j + 1) * groups],
            &mut row[..groups],
        );
        for (g, &v) in row[..groups].iter().enumerate() {
            out[g * BLOCK + j] = v;
        }
    }
}

/// The first 16 values of `v`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn load16(v: &[f32]) -> __m512 {
    let v = &v[..BLOCK];
    // SAFETY: v holds 16 f32.
    unsafe { _mm512_loadu_ps(v.as_ptr()) }
}

/// Writes lane `j < n` of each row's accumulator to `out[(i0 + j) * rows + r]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scatter(acc: &[__m512], rows: usize, i0: usize, n: usize, out: &mut [f32]) {
    for (r, v) in acc.iter().enumerate().take(rows) {
        let mut lanes = [0f32; BLOCK];
        // SAFETY: lanes holds 16 f32.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *v) };
        for (j, &x) in lanes.iter().enumerate().take(n) {
            out[(i0 + j) * rows + r] = x;
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn q8_rows(
    q: &[i8],
    scales: &[u16],
    k: usize,
    first: usize,
    count: usize,
    a: &QuantActs,
    out: &mut [f32],
) {
    let (rows, groups) = (a.rows, k / GROUP);
    let (mut row, mut ws) = (vec![0f32; groups], vec![0f32; groups * BLOCK]);
    for i0 in (0..count).step_by(BLOCK) {
        let (o0, n) = (first + i0, (count - i0).min(BLOCK));
        block_values(scales, groups, o0, n, &mut row, &mut ws);
        let mut acc = [_mm512_setzero_ps(); MAX_TILE_ROWS];
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            for g in 0..groups {
                if r == 0 && g % 2 == 0 {
                    prefetch_next(q.as_ptr() as *const u8, q.len(), k, o0 + BLOCK, g * GROUP);
                }
                // SAFETY: q8_tile's asserts bound the loads (outputs past n are not read).
                let dot = unsafe {
                    let c = _mm512_loadu_si512(a.q.as_ptr().add(r * k + g * GROUP) as *const _);
                    let at = |s: usize| (o0 + SLOT[s]) * k + g * GROUP;
                    let mut halves = [_mm512_setzero_si512(); BLOCK / 2];
                    for (i, h) in halves.iter_mut().enumerate() {
                        let (s0, s1) = (2 * i, 2 * i + 1);
                        *h = halve_pair(
                            q8_slot(q.as_ptr(), at(s0), SLOT[s0] < n, c),
                            q8_slot(q.as_ptr(), at(s1), SLOT[s1] < n, c),
                        );
                    }
                    transpose_sum(halves)
                };
                let ws = load16(&ws[g * BLOCK..]);
                let s = _mm512_mul_ps(ws, _mm512_set1_ps(a.group_scale(r, g)));
                *acc = _mm512_add_ps(*acc, _mm512_mul_ps(s, _mm512_cvtepi32_ps(dot)));
            }
        }
        scatter(&acc[..rows], rows, i0, n, out);
    }
}

/// Two outputs' codes of one group as bytes in the activations' q4 order: lanes 0–7 output
/// `x`'s 16 low then 16 high nibbles, lanes 8–15 output `y`'s.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn unpack_two(x: __m128i, y: __m128i) -> __m512i {
    let v = _mm512_inserti32x4::<1>(_mm512_castsi128_si512(x), x);
    let v = _mm512_inserti32x4::<3>(_mm512_inserti32x4::<2>(v, y), y);
    let shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    _mm512_and_si512(_mm512_srlv_epi64(v, shift), _mm512_set1_epi8(15))
}

/// Groups per block of the q4 rows kernel: one output's packed codes of 4 groups are one
/// 64-byte load.
const QUAD: usize = 4;

/// Sixteen outputs' products over one block of [`QUAD`] groups (`v[j]`: output `j`'s 128-bit
/// lane `g` holds four partial sums of group `g`) to one vector per group whose lane `j` is
/// output `j`'s exact group dot product.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn quad_sums(v: &[__m512i; BLOCK]) -> [__m512i; QUAD] {
    let pair = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    };
    let p: [__m512i; 8] = std::array::from_fn(|a| pair(v[2 * a], v[2 * a + 1]));
    let four = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    };
    // q[m]'s 128-bit lane g: outputs 4m..4m + 4 of group g.
    let q: [__m512i; 4] = std::array::from_fn(|m| four(p[2 * m], p[2 * m + 1]));
    let t = [
        _mm512_shuffle_i32x4::<0x44>(q[0], q[1]),
        _mm512_shuffle_i32x4::<0xEE>(q[0], q[1]),
        _mm512_shuffle_i32x4::<0x44>(q[2], q[3]),
        _mm512_shuffle_i32x4::<0xEE>(q[2], q[3]),
    ];
    [
        _mm512_shuffle_i32x4::<0x88>(t[0], t[2]),
        _mm512_shuffle_i32x4::<0xDD>(t[0], t[2]),
        _mm512_shuffle_i32x4::<0x88>(t[1], t[3]),
        _mm512_shuffle_i32x4::<0xDD>(t[1], t[3]),
    ]
}

/// One row's q4 activation bytes regrouped per block of [`QUAD`] groups: the bytes that meet
/// the low nibbles of the 4 groups' packed codes (64), then those that meet the high ones,
/// appended to `lo_hi`.
fn quad_acts(row: &[i8], lo_hi: &mut Vec<i8>) {
    for block in row.chunks_exact(QUAD * GROUP) {
        for half in 0..2 {
            for g in block.chunks_exact(GROUP) {
                lo_hi.extend_from_slice(&g[half * GROUP / 2..(half + 1) * GROUP / 2]);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn q4_rows(
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
    let mut row = vec![0f32; groups];
    let (mut ws, mut wm) = (vec![0f32; groups * BLOCK], vec![0f32; groups * BLOCK]);
    let half = GROUP / 2;
    // Each row's activations regrouped for the blocks of QUAD groups, once per call.
    let quads = groups / QUAD;
    let mut lo_hi = Vec::with_capacity(rows * quads * QUAD * GROUP);
    for r in 0..rows {
        quad_acts(&a.q_bytes[r * k..r * k + quads * QUAD * GROUP], &mut lo_hi);
    }
    for i0 in (0..count).step_by(BLOCK) {
        let (o0, n) = (first + i0, (count - i0).min(BLOCK));
        block_values(scales, groups, o0, n, &mut row, &mut ws);
        block_values(mins, groups, o0, n, &mut row, &mut wm);
        let mut acc = [_mm512_setzero_ps(); MAX_TILE_ROWS];
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            let mut min_acc = _mm512_setzero_ps();
            let mut apply = |g: usize, dot: __m512i| {
                let ws = load16(&ws[g * BLOCK..]);
                let s = _mm512_mul_ps(ws, _mm512_set1_ps(a.group_scale(r, g)));
                *acc = _mm512_add_ps(*acc, _mm512_mul_ps(s, _mm512_cvtepi32_ps(dot)));
                let wm = load16(&wm[g * BLOCK..]);
                let m = _mm512_mul_ps(wm, _mm512_set1_ps(a.scale_sum[r * groups + g]));
                min_acc = _mm512_add_ps(min_acc, m);
            };
            // Blocks of QUAD groups: per output one 64-byte load, two `vpdpbusd`.
            let row_acts = &lo_hi[r * quads * QUAD * GROUP..];
            for b in 0..quads {
                if r == 0 {
                    prefetch_next(q.as_ptr(), q.len(), k / 2, o0 + BLOCK, b * QUAD * half);
                }
                // SAFETY: q4_tile's asserts bound the loads (outputs past n are not read);
                // row_acts holds 128 bytes per block.
                let dots = unsafe {
                    let acts = row_acts.as_ptr().add(b * 2 * QUAD * half);
                    let a_lo = _mm512_loadu_si512(acts as *const _);
                    let a_hi = _mm512_loadu_si512(acts.add(QUAD * half) as *const _);
                    let low = _mm512_set1_epi8(15);
                    let v: [__m512i; BLOCK] = std::array::from_fn(|j| {
                        if j >= n {
                            return _mm512_setzero_si512();
                        }
                        let at = ((o0 + j) * k + b * QUAD * GROUP) / 2;
                        let p = _mm512_loadu_si512(q.as_ptr().add(at) as *const _);
                        let lo = _mm512_and_si512(p, low);
                        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(p), low);
                        let v = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, a_lo);
                        _mm512_dpbusd_epi32(v, hi, a_hi)
                    });
                    quad_sums(&v)
                };
                for (i, &dot) in dots.iter().enumerate() {
                    apply(b * QUAD + i, dot);
                }
            }
            for g in quads * QUAD..groups {
                if r == 0 && g % 4 == 0 {
                    prefetch_next(q.as_ptr(), q.len(), k / 2, o0 + BLOCK, g * half);
                }
                // SAFETY: q4_tile's asserts bound the loads (outputs past n are not read).
                let dot = unsafe {
                    let c = _mm256_loadu_si256(
                        a.q_bytes.as_ptr().add(r * k + g * GROUP) as *const __m256i
                    );
                    let c = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(c), c);
                    let at = |s: usize| ((o0 + SLOT[s]) * k + g * GROUP) / 2;
                    let mut halves = [_mm512_setzero_si512(); BLOCK / 2];
                    for (i, h) in halves.iter_mut().enumerate() {
                        let (s0, s1) = (2 * i, 2 * i + 1);
                        let w = unpack_two(
                            q4_slot(q.as_ptr(), at(s0), SLOT[s0] < n),
                            q4_slot(q.as_ptr(), at(s1), SLOT[s1] < n),
                        );
                        *h = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, c);
                    }
                    transpose_sum(halves)
                };
                apply(g, dot);
            }
            *acc = _mm512_add_ps(*acc, min_acc);
        }
        scatter(&acc[..rows], rows, i0, n, out);
    }
}
