//! Activation rows quantized for the q8 and q4 kernels, and (for the AVX-512 VNNI family)
//! the same codes interleaved with the rows in the vector lanes.

use super::{Simd, GROUP};

/// Activation rows quantized per group of [`GROUP`] values: `x ≈ q * scale` with
/// `scale = max|x| / ACT_MAX` in f32. For q8 weights the codes span 16 bits, which leaves the
/// int8 weights the only quantization that matters (8-bit activations raised q8's KL
/// divergence from f32 2.8-fold, docs/quantization.md); for q4 weights, whose own error is
/// a hundred times larger, 8-bit codes change nothing measurable and let AVX-512 multiply
/// four codes per lane with `vpdpbusd`. Buffers are reused between calls.
///
/// The lane layout ([`QuantActs::prepare`] with the AVX-512 family and at least
/// [`LANES_MIN_ROWS`] rows) holds [`LANES`] rows per tile, one per 32-bit lane: for each tile,
/// group and run of four codes ("quad"), one 64-byte vector with each row's four codes. A
/// 16-bit q8 code `c` is offset and split into two unsigned bytes, `c + 32768 = 256 H + L`
/// (`H = (c >> 8) + 128`, `L = c & 255`), so two `vpdpbusd` multiply it by one broadcast of
/// signed weight bytes exactly; the kernel removes the offset with the weights' group sums.
#[derive(Debug, Default, Clone)]
pub struct QuantActs {
    pub rows: usize,
    pub k: usize,
    /// `[rows, k]` codes; for q4 each group holds its 16 even columns, then its 16 odd ones
    /// (the order in which a byte's low and high nibbles unpack).
    pub(super) q: Vec<i16>,
    /// The same codes as bytes (q4 only, where they fit in 8 bits).
    pub(super) q_bytes: Vec<i8>,
    /// `[rows, groups, 8]`: each group's scale repeated 8 times (one 256-bit lane group).
    pub(super) scale8: Vec<f32>,
    /// `[rows, groups]`: scale times the sum of the group's codes (the q4 minimum term).
    pub(super) scale_sum: Vec<f32>,
    /// Lane layout present (see the type's documentation).
    pub(super) lanes: bool,
    /// `[tiles, groups, parts, 8 quads, LANES]` words of four codes (bytes, little-endian):
    /// q8 parts `H`, then `L`; q4 one part. Padding lanes are zero.
    pub(super) lane_words: Vec<u32>,
    /// `[tiles, groups, LANES]` activation scales (zero in padding lanes).
    pub(super) lane_scale: Vec<f32>,
    /// `[tiles, groups, LANES]` q4: `scale_sum` per lane.
    pub(super) lane_scale_sum: Vec<f32>,
}

/// Rows per lane tile (one 512-bit register of 32-bit lanes).
pub(super) const LANES: usize = 16;
/// Fewest rows for which the lane layout pays (below it the kernels reduce each group's
/// products horizontally; both give the same bits).
pub(super) const LANES_MIN_ROWS: usize = 4;
/// Codes of one group of one tile, per part.
pub(super) const TILE_GROUP_BYTES: usize = LANES * GROUP;

/// Largest activation code for q8 weights.
const ACT_MAX: f32 = 32767.0;
/// Largest activation code for q4 weights.
const ACT_MAX_Q4: f32 = 127.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantScheme {
    Q8,
    Q4,
}

impl QuantActs {
    pub fn groups(&self) -> usize {
        self.k / GROUP
    }

    pub(super) fn group_scale(&self, r: usize, g: usize) -> f32 {
        self.scale8[(r * self.groups() + g) * 8]
    }

    /// Lane tiles of the lane layout.
    pub(super) fn tiles(&self) -> usize {
        self.rows.div_ceil(LANES)
    }

    /// Quantizes `x` (`[rows, k]`, `k` a multiple of [`GROUP`]) for weights in `scheme`, laid
    /// out for the kernels of `simd`.
    pub fn prepare(&mut self, x: &[f32], rows: usize, k: usize, scheme: QuantScheme, simd: Simd) {
        debug_assert!(k.is_multiple_of(GROUP) && x.len() >= rows * k);
        self.rows = rows;
        self.k = k;
        self.lanes = simd == Simd::Avx512 && rows >= LANES_MIN_ROWS;
        #[cfg(target_arch = "x86_64")]
        if self.lanes {
            self.size_lanes(scheme);
            // SAFETY: the lane layout is only chosen with the AVX-512 family, which is only
            // selected when the CPU reports its features.
            unsafe { super::x86_avx512_acts::prepare_lanes(self, x, scheme, act_max(scheme)) };
            return;
        }
        self.quantize_rows(x, scheme);
        if self.lanes {
            self.interleave(scheme);
        }
    }

    /// The codes and scales row by row (every family but the lane layout reads these).
    fn quantize_rows(&mut self, x: &[f32], scheme: QuantScheme) {
        let (rows, k, groups) = (self.rows, self.k, self.groups());
        self.q.resize(rows * k, 0);
        self.scale8.resize(rows * groups * 8, 0.0);
        self.scale_sum.resize(rows * groups, 0.0);
        let act_max = act_max(scheme);
        for r in 0..rows {
            for g in 0..groups {
                let src = &x[r * k + g * GROUP..r * k + (g + 1) * GROUP];
                let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = amax / act_max;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                let mut codes = [0i16; GROUP];
                let mut sum = 0i32;
                for (c, &v) in codes.iter_mut().zip(src) {
                    *c = round_to_int((v * inv).clamp(-act_max, act_max)) as i16;
                    sum += *c as i32;
                }
                let dst = &mut self.q[r * k + g * GROUP..r * k + (g + 1) * GROUP];
                if scheme == QuantScheme::Q4 {
                    for (i, pair) in codes.chunks_exact(2).enumerate() {
                        dst[i] = pair[0];
                        dst[GROUP / 2 + i] = pair[1];
                    }
                } else {
                    dst.copy_from_slice(&codes);
                }
                self.scale8[(r * groups + g) * 8..(r * groups + g + 1) * 8].fill(scale);
                self.scale_sum[r * groups + g] = scale * sum as f32;
            }
        }
        self.q_bytes.clear();
        if scheme == QuantScheme::Q4 {
            self.q_bytes.extend(self.q.iter().map(|&c| c as i8));
        }
    }

    /// Sizes the lane layout's buffers for `self.rows` rows (padding lanes zero).
    fn size_lanes(&mut self, scheme: QuantScheme) {
        let (tiles, groups) = (self.tiles(), self.groups());
        let parts = match scheme {
            QuantScheme::Q8 => 2,
            QuantScheme::Q4 => 1,
        };
        self.lane_words.clear();
        self.lane_words
            .resize(tiles * groups * parts * TILE_GROUP_BYTES / 4, 0);
        for v in [&mut self.lane_scale, &mut self.lane_scale_sum] {
            v.clear();
            v.resize(tiles * groups * LANES, 0.0);
        }
    }

    /// The lane layout by the scalar path (the oracle of the AVX-512 one).
    #[cfg(all(test, target_arch = "x86_64"))]
    pub(super) fn prepare_lanes_scalar(
        &mut self,
        x: &[f32],
        rows: usize,
        k: usize,
        scheme: QuantScheme,
    ) {
        self.rows = rows;
        self.k = k;
        self.lanes = true;
        self.quantize_rows(x, scheme);
        self.interleave(scheme);
    }

    /// Builds the lane layout from the codes.
    fn interleave(&mut self, scheme: QuantScheme) {
        let (rows, k, groups) = (self.rows, self.k, self.groups());
        let parts = match scheme {
            QuantScheme::Q8 => 2,
            QuantScheme::Q4 => 1,
        };
        // In 32-bit words: one word holds a lane's four codes of a quad.
        let per_group = parts * TILE_GROUP_BYTES / 4;
        let part = TILE_GROUP_BYTES / 4;
        self.size_lanes(scheme);
        let mut words = std::mem::take(&mut self.lane_words);
        for r in 0..rows {
            let (t, lane) = (r / LANES, r % LANES);
            for g in 0..groups {
                let at = (t * groups + g) * LANES + lane;
                self.lane_scale[at] = self.group_scale(r, g);
                self.lane_scale_sum[at] = self.scale_sum[r * groups + g];
                let codes = &self.q[r * k + g * GROUP..][..GROUP];
                let base = (t * groups + g) * per_group + lane;
                for (quad, &c) in codes.as_chunks::<4>().0.iter().enumerate() {
                    let slot = base + quad * LANES;
                    match scheme {
                        QuantScheme::Q8 => {
                            // c + 32768 = 256 H + L: H = (c >> 8) + 128, L = c & 255.
                            let high = c.map(|c| ((c >> 8) + 128) as u8);
                            words[slot] = u32::from_le_bytes(high);
                            words[slot + part] = u32::from_le_bytes(c.map(|c| (c & 255) as u8));
                        }
                        QuantScheme::Q4 => {
                            words[slot] = u32::from_le_bytes(c.map(|c| c as u8));
                        }
                    }
                }
            }
        }
        self.lane_words = words;
    }
}

/// Largest activation code for weights in `scheme`.
fn act_max(scheme: QuantScheme) -> f32 {
    match scheme {
        QuantScheme::Q8 => ACT_MAX,
        QuantScheme::Q4 => ACT_MAX_Q4,
    }
}

/// Rounds to the nearest integer (ties to even) for |x| < 2^22, without a libm call (so the
/// loop vectorises on every target).
#[inline(always)]
fn round_to_int(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + MAGIC) - MAGIC
}
