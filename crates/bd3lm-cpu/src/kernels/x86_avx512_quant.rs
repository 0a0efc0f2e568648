//! q8 and q4 on AVX-512 VNNI, in the portable kernels' arithmetic exactly: each group's dot
//! product of codes is an exact integer, and per output and row the groups accumulate in
//! order as `acc += (weight_scale * act_scale) * dot` (q4: `min * scale_sum` in a second sum,
//! added last), so every path gives the portable kernels' bits, whatever the row count.
//!
//! With at least `LANES_MIN_ROWS` rows the activations come in the lane layout
//! (`acts.rs`): 16 rows in the lanes of one register, so one broadcast of four weight bytes
//! serves 16 rows in one `vpdpbusd`, and a pass handles [`OUTS`] outputs so each loaded
//! activation vector serves several weight rows; the group scales then apply to 16 rows at
//! once. `vpdpbusd` multiplies unsigned by signed bytes: a q8 code is stored as two unsigned
//! bytes `c + 32768 = 256 H + L`, so both multiply the same broadcast of signed weights, and
//! the offset's share `-32768 * sum(w)` of each group (a property of the weights alone,
//! computed once per engine) starts the group's accumulator. q4's nibbles are unsigned
//! already (unpacked once per pass).
//!
//! With fewer rows, `x86_avx512_rows.rs` sums each group's products horizontally.

use super::acts::{LANES, TILE_GROUP_BYTES};
use super::x86_avx2::f16_row;
use super::x86_avx512_rows::{q4_rows, q8_rows};
use super::{q8_group_sums, QuantActs, GROUP, MAX_TILE_ROWS};
use core::arch::x86_64::*;

/// Outputs per pass of the lane kernels.
const OUTS: usize = 4;

/// Requests group `g`'s `share` bytes of the next pass's weights at `ahead` (nothing when
/// null): with `share` the pass's bytes per group, `groups` calls cover them all.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn prefetch_share(ahead: *const u8, g: usize, share: usize) {
    if ahead.is_null() {
        return;
    }
    for line in (0..share).step_by(64) {
        let p = ahead.wrapping_add(g * share + line);
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
    }
}

/// Writes lanes `0..rows` of `v` to `dst`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn store_lanes(dst: &mut [f32], v: __m512) {
    let n = dst.len().min(LANES);
    let mask: __mmask16 = if n == LANES { !0 } else { (1u16 << n) - 1 };
    // SAFETY: the mask limits the store to dst's first n elements.
    unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask, v) }
}

/// Four bytes at `p` broadcast to every lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn bcast4(p: *const u8) -> __m512i {
    // SAFETY: the caller guarantees four readable bytes.
    _mm512_set1_epi32(unsafe { (p as *const i32).read_unaligned() })
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(super) fn q8_tile(
    q: &[i8],
    scales: &[u16],
    sums: Option<&[i32]>,
    k: usize,
    first: usize,
    count: usize,
    a: &QuantActs,
    out: &mut [f32],
) {
    let groups = k / GROUP;
    assert!(q.len() >= (first + count) * k && scales.len() >= (first + count) * groups);
    assert!(a.rows <= MAX_TILE_ROWS && out.len() >= count * a.rows);
    if a.lanes {
        assert!(a.lane_words.len() * 4 >= a.tiles() * groups * 2 * TILE_GROUP_BYTES);
        q8_lanes(q, scales, sums, k, first, count, a, out)
    } else {
        assert!(a.q.len() >= a.rows * k);
        q8_rows(q, scales, k, first, count, a, out)
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q8_lanes(
    q: &[i8],
    scales: &[u16],
    sums: Option<&[i32]>,
    k: usize,
    first: usize,
    count: usize,
    a: &QuantActs,
    out: &mut [f32],
) {
    let (rows, groups) = (a.rows, k / GROUP);
    if let Some(s) = sums {
        assert!(s.len() >= (first + count) * groups, "q8 group sums");
    }
    let mut ws = vec![0f32; OUTS * groups];
    // The pass's group sums when the engine has none.
    let mut own_sums = vec![0i32; if sums.is_some() { 0 } else { OUTS * groups }];
    for i0 in (0..count).step_by(OUTS) {
        let n = (count - i0).min(OUTS);
        let o0 = first + i0;
        for j in 0..n {
            let o = o0 + j;
            f16_row(
                &scales[o * groups..(o + 1) * groups],
                &mut ws[j * groups..(j + 1) * groups],
            );
            if sums.is_none() {
                q8_group_sums(
                    &q[o * k..(o + 1) * k],
                    &mut own_sums[j * groups..(j + 1) * groups],
                );
            }
        }
        let pass_sums = match sums {
            Some(s) => &s[o0 * groups..(o0 + n) * groups],
            None => &own_sums[..n * groups],
        };
        let signed = q[o0 * k..].as_ptr() as *const u8;
        // The next pass's rows, requested while this one computes (first tile only).
        let next = signed.wrapping_add(OUTS * k);
        for t in 0..a.tiles() {
            let ahead = if t == 0 && i0 + OUTS < count {
                next
            } else {
                core::ptr::null()
            };
            let lanes = (rows - t * LANES).min(LANES);
            let mut put = |j: usize, v: __m512| {
                let at = (i0 + j) * rows + t * LANES;
                store_lanes(&mut out[at..at + lanes], v);
            };
            if n == OUTS {
                // SAFETY: rows o0..o0 + OUTS exist (q8_tile's asserts).
                let res = unsafe { q8_pass::<OUTS>(signed, pass_sums, &ws, k, a, t, ahead) };
                for (j, v) in res.into_iter().enumerate() {
                    put(j, v);
                }
            } else {
                for j in 0..n {
                    let g = j * groups..;
                    // SAFETY: as above, one row at a time.
                    let res = unsafe {
                        q8_pass::<1>(
                            signed.add(j * k),
                            &pass_sums[g.clone()],
                            &ws[g],
                            k,
                            a,
                            t,
                            core::ptr::null(),
                        )
                    };
                    put(j, res[0]);
                }
            }
        }
    }
}

/// `N` consecutive outputs (codes from `signed`, group sums and f32 scales in rows of `k`
/// resp. `groups`) for lane tile `t`. Unless null, the `N * k` bytes at `ahead` (the next
/// pass's weights) are prefetched along the way: streaming them in while the multiplies run
/// keeps the next pass from waiting on memory.
///
/// # Safety
/// `signed` must point at `N` rows of `k` codes; the lane layout must be present.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn q8_pass<const N: usize>(
    signed: *const u8,
    sums: &[i32],
    ws: &[f32],
    k: usize,
    a: &QuantActs,
    t: usize,
    ahead: *const u8,
) -> [__m512; N] {
    let groups = k / GROUP;
    let need = (N - 1) * groups + groups;
    assert!(sums.len() >= need && ws.len() >= need);
    let mut res = [_mm512_setzero_ps(); N];
    for g in 0..groups {
        prefetch_share(ahead, g, N * GROUP);
        let base =
            a.lane_words[(t * groups + g) * 2 * TILE_GROUP_BYTES / 4..].as_ptr() as *const u8;
        let mut hi = [_mm512_setzero_si512(); N];
        let mut lo: [__m512i; N] = std::array::from_fn(|j| _mm512_set1_epi32(sums[j * groups + g]));
        for quad in 0..GROUP / 4 {
            // SAFETY: the layout holds 2 * TILE_GROUP_BYTES per group and tile; weights as
            // the caller guarantees.
            unsafe {
                let hi_v = _mm512_loadu_si512(base.add(quad * 64) as *const _);
                let lo_v = _mm512_loadu_si512(base.add(TILE_GROUP_BYTES + quad * 64) as *const _);
                for j in 0..N {
                    let w = bcast4(signed.add(j * k + g * GROUP + quad * 4));
                    hi[j] = _mm512_dpbusd_epi32(hi[j], hi_v, w);
                    lo[j] = _mm512_dpbusd_epi32(lo[j], lo_v, w);
                }
            }
        }
        // SAFETY: the layout holds LANES values per group and tile.
        let act_scale =
            unsafe { _mm512_loadu_ps(a.lane_scale.as_ptr().add((t * groups + g) * LANES)) };
        for j in 0..N {
            let dot = _mm512_add_epi32(_mm512_slli_epi32::<8>(hi[j]), lo[j]);
            let s = _mm512_mul_ps(_mm512_set1_ps(ws[j * groups + g]), act_scale);
            res[j] = _mm512_add_ps(res[j], _mm512_mul_ps(s, _mm512_cvtepi32_ps(dot)));
        }
    }
    res
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn q4_tile(
    q: &[u8],
    scales: &[u16],
    mins: &[u16],
    k: usize,
    first: usize,
    count: usize,
    a: &QuantActs,
    out: &mut [f32],
) {
    let groups = k / GROUP;
    let end = (first + count) * groups;
    assert!(q.len() * 2 >= (first + count) * k && scales.len() >= end && mins.len() >= end);
    assert!(a.rows <= MAX_TILE_ROWS && out.len() >= count * a.rows);
    let (rows, mut ws, mut wm) = (a.rows, vec![0f32; OUTS * groups], vec![0f32; OUTS * groups]);
    if !a.lanes {
        assert!(a.q_bytes.len() >= a.rows * k);
        return q4_rows(q, scales, mins, k, first, count, a, out);
    }
    assert!(a.lane_words.len() * 4 >= a.tiles() * groups * TILE_GROUP_BYTES);
    let mut codes = vec![0u8; OUTS * k];
    for i0 in (0..count).step_by(OUTS) {
        let n = (count - i0).min(OUTS);
        for j in 0..n {
            let o = first + i0 + j;
            unpack_row(
                &q[o * k / 2..(o + 1) * k / 2],
                &mut codes[j * k..(j + 1) * k],
            );
            let span = j * groups..(j + 1) * groups;
            f16_row(&scales[o * groups..(o + 1) * groups], &mut ws[span.clone()]);
            f16_row(&mins[o * groups..(o + 1) * groups], &mut wm[span]);
        }
        // The next pass's packed rows, requested while this one computes (first tile only).
        let next = q[(first + i0) * k / 2..]
            .as_ptr()
            .wrapping_add(OUTS * k / 2);
        for t in 0..a.tiles() {
            let lanes = (rows - t * LANES).min(LANES);
            let mut put = |j: usize, v: __m512| {
                let at = (i0 + j) * rows + t * LANES;
                store_lanes(&mut out[at..at + lanes], v);
            };
            let ahead = if t == 0 && i0 + OUTS < count {
                next
            } else {
                core::ptr::null()
            };
            if n == OUTS {
                for (j, v) in q4_pass::<OUTS>(&codes, &ws, &wm, k, a, t, ahead)
                    .into_iter()
                    .enumerate()
                {
                    put(j, v);
                }
            } else {
                for j in 0..n {
                    let span = j * groups..;
                    let v = q4_pass::<1>(
                        &codes[j * k..],
                        &ws[span.clone()],
                        &wm[span],
                        k,
                        a,
                        t,
                        core::ptr::null(),
                    );
                    put(j, v[0]);
                }
            }
        }
    }
}

/// One row of packed q4 codes as bytes, per group in the activations' q4 order (the 16 low
/// nibbles, then the 16 high ones).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn unpack_row(src: &[u8], dst: &mut [u8]) {
    let low = _mm_set1_epi8(15);
    for (s, d) in src.chunks_exact(GROUP / 2).zip(dst.chunks_exact_mut(GROUP)) {
        // SAFETY: s holds 16 bytes, d 32.
        unsafe {
            let v = _mm_loadu_si128(s.as_ptr() as *const __m128i);
            _mm_storeu_si128(d.as_mut_ptr() as *mut __m128i, _mm_and_si128(v, low));
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), low);
            _mm_storeu_si128(d.as_mut_ptr().add(GROUP / 2) as *mut __m128i, hi);
        }
    }
}

/// `N` consecutive outputs (unpacked codes, f32 scales and minimums in rows of `k` resp.
/// `groups`) for lane tile `t`, prefetching the next pass's packed codes at `ahead` unless
/// null (as `q8_pass`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn q4_pass<const N: usize>(
    codes: &[u8],
    ws: &[f32],
    wm: &[f32],
    k: usize,
    a: &QuantActs,
    t: usize,
    ahead: *const u8,
) -> [__m512; N] {
    let groups = k / GROUP;
    let need = (N - 1) * groups + groups;
    assert!(codes.len() >= N * k && ws.len() >= need && wm.len() >= need);
    let (mut res, mut mins) = ([_mm512_setzero_ps(); N], [_mm512_setzero_ps(); N]);
    for g in 0..groups {
        prefetch_share(ahead, g, N * GROUP / 2);
        let base = a.lane_words[(t * groups + g) * TILE_GROUP_BYTES / 4..].as_ptr() as *const u8;
        // Two accumulators per output (even and odd quads): 2N chains of 4 dependent
        // `vpdpbusd` instead of N of 8, so their latency hides; integer sums, so exact.
        let mut even = [_mm512_setzero_si512(); N];
        let mut odd = [_mm512_setzero_si512(); N];
        for quad in (0..GROUP / 4).step_by(2) {
            // SAFETY: the layout holds TILE_GROUP_BYTES per group and tile; the assert above
            // bounds the weight reads.
            unsafe {
                let c0 = _mm512_loadu_si512(base.add(quad * 64) as *const _);
                let c1 = _mm512_loadu_si512(base.add(quad * 64 + 64) as *const _);
                for j in 0..N {
                    let w = codes.as_ptr().add(j * k + g * GROUP + quad * 4);
                    even[j] = _mm512_dpbusd_epi32(even[j], bcast4(w), c0);
                    odd[j] = _mm512_dpbusd_epi32(odd[j], bcast4(w.add(4)), c1);
                }
            }
        }
        let acc: [__m512i; N] = std::array::from_fn(|j| _mm512_add_epi32(even[j], odd[j]));
        let at = (t * groups + g) * LANES;
        // SAFETY: the layout holds LANES values per group and tile.
        let (act_scale, scale_sum) = unsafe {
            (
                _mm512_loadu_ps(a.lane_scale.as_ptr().add(at)),
                _mm512_loadu_ps(a.lane_scale_sum.as_ptr().add(at)),
            )
        };
        for j in 0..N {
            let s = _mm512_mul_ps(_mm512_set1_ps(ws[j * groups + g]), act_scale);
            res[j] = _mm512_add_ps(res[j], _mm512_mul_ps(s, _mm512_cvtepi32_ps(acc[j])));
            let m = _mm512_mul_ps(_mm512_set1_ps(wm[j * groups + g]), scale_sum);
            mins[j] = _mm512_add_ps(mins[j], m);
        }
    }
    std::array::from_fn(|j| _mm512_add_ps(res[j], mins[j]))
}
