// Sampling on the GPU (spec §4.5, §9): SUBS log-softmax, the nucleus filter, the posterior row
// and the exponential race with the fixtures' SplitMix64 uniforms. Only the drawn token id
// and its probability are written (to the step's row of the draws table), never the logits;
// in first-hitting mode also the entropy (nats) of the row's nucleus-filtered, renormalised
// p_x0, for the entropy-bounded reveal stage (reveal.wgsl).
//
// Each row is cut into sp.tiles tiles of sp.tile_len logits, and every pass over the logits
// runs one workgroup per (tile, row): grid (tiles, rows). Six dispatches per step:
//   stats   per tile: max and sum of exp(x - max) of the SUBS logits -> parts.
//   hist1   every tile combines the row's tile statistics (fixed order) into max and lse;
//           the histogram of p = exp(x - lse) by bits >> 20 (1024 buckets) -> hist level 1.
//   hist2   finds the level-1 bucket holding the nucleus border, then histograms its
//           elements by bits 10..19 -> hist level 2.
//   hist3   the same one level down, by bits 0..9 -> hist level 3.
//   draw    resolves the exact border t; per tile: the race's best (key, id), the entropy
//           partial, the probes' counts -> parts.
//   finish  one workgroup per row: combines the tiles' partials in a fixed order, writes the
//           draw (and the clean rows' shortcut).
// Determinism: the histograms hold masses as 64-bit fixed-point integers (2^-60 units) added
// with u32 atomics and carries, so their sums do not depend on the order of the additions;
// every float reduction runs in a fixed order. The kept set is {p : bits(p) >= t} for the
// smallest bit pattern t with mass(bits >= t) <= top_p (three 10-bit radix levels resolve all
// 30 bits of a p < 2 exactly); when even the largest probability exceeds top_p it is kept
// alone (spec §9.4). Masses are exact sums of the f32 probabilities (those below 2^-36 lose
// their bits under 2^-60), so the border differs from the reference's f64 only through the
// f32 probabilities themselves, and near-ties of the race stay f32 (D5).
//
// Modes (Step.mode): 0 = first hitting (draw from p_x0), 1 = posterior, 2 = posterior at
// t = 0 with the reference quirk (every masked row becomes the first nucleus-removed id,
// else 0), 3 = nucleus probe (kept count, kept mass), 4 = race probe (the rows hold q).

#include uniforms.wgsl

const WG: u32 = 256u;
const BUCKETS: u32 = 1024u;
// Words of one level of a row's histogram: (lo, hi) per bucket.
const LEVEL_WORDS: u32 = 2048u;
// Words per (row, tile) in `parts`, and per search slot of a row.
const PART_WORDS: u32 = 8u;
const SLOT_WORDS: u32 = 8u;
const NO_ID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> sp: SampleParams;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
// The device-side block (which rows are masked).
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
// [step, block row] -> (id, value bits), then from sp.entropy_off [step, block row] -> entropy.
@group(0) @binding(4) var<storage, read_write> draws: array<u32>;
// Per (row, tile): [0] max, [1] sum of exp, [2] race key, [3] race id, [4] entropy partial,
// [5] kept count, [6] first removed id. Then per row 4 search slots (slot_at):
// slot 0 = (max, lse); slot k = the search after level k: [0] status (0 searching,
// 1 final), [1] prefix, [2..3] mass above (fixed point), [4] t, [5] kept mass.
@group(0) @binding(7) var<storage, read_write> parts: array<u32>;
// Per row, 3 levels of BUCKETS (lo, hi) fixed-point masses.
@group(0) @binding(8) var<storage, read_write> hist: array<atomic<u32>>;

var<workgroup> red: array<f32, 256>;
var<workgroup> best_idx: array<u32, 256>;
var<workgroup> scan_lo: array<u32, 256>;
var<workgroup> scan_hi: array<u32, 256>;
var<workgroup> local_hist: array<atomic<u32>, 2048>;
var<workgroup> shared_u: array<u32, 8>;
// The bucket a level's search found: (bucket, mass above it, its mass).
var<workgroup> found_u: array<u32, 5>;

#include splitmix.wgsl

// Element j of the step's stream as the nearest f32 of (mix(seed + (j+1) * GAMMA) >> 11) * 2^-53.
fn uniform01(j: u32) -> f32 {
    let gamma = vec2<u32>(0x7F4A7C15u, 0x9E3779B9u);
    let z = mix64(add64(vec2<u32>(step.seed_lo, step.seed_hi), mul64(vec2<u32>(j + 1u, 0u), gamma)));
    let hi21 = z.y >> 11u;
    let lo32 = (z.y << 21u) | (z.x >> 11u);
    return f32(hi21) * exp2(-21.0) + f32(lo32) * exp2(-53.0);
}

fn race_key(q: f32, j: u32) -> f32 {
    return q / (1e-10 - log(uniform01(j) + 1e-10));
}

// ---- workgroup reductions (fixed tree order: deterministic) ----
fn reduce_max(tid: u32, v: f32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (tid < s) {
            red[tid] = max(red[tid], red[tid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(tid: u32, v: f32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (tid < s) {
            red[tid] = red[tid] + red[tid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_min_u32(tid: u32, v: u32) -> u32 {
    best_idx[tid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (tid < s) {
            best_idx[tid] = min(best_idx[tid], best_idx[tid + s]);
        }
        workgroupBarrier();
    }
    let r = best_idx[0];
    workgroupBarrier();
    return r;
}

// Largest key, lowest index on ties (torch.argmax); NaN keys never win. Returns the index
// (and leaves the key in red[0] until the next reduction).
fn argmax_reduce(tid: u32, key: f32, idx: u32) -> u32 {
    red[tid] = key;
    best_idx[tid] = idx;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st = st >> 1u) {
        if (tid < st) {
            let ov = red[tid + st];
            let oi = best_idx[tid + st];
            if (ov > red[tid] || (ov == red[tid] && oi < best_idx[tid])) {
                red[tid] = ov;
                best_idx[tid] = oi;
            }
        }
        workgroupBarrier();
    }
    let out = best_idx[0];
    workgroupBarrier();
    return out;
}

fn subs_logit(base: u32, v: u32) -> f32 {
    var x = logits[base + v];
    if (v == sp.mask) {
        x = x + -1e6;
    }
    return x;
}

fn part_at(row: u32, tile: u32) -> u32 {
    return (row * sp.tiles + tile) * PART_WORDS;
}

fn slot_at(row: u32, k: u32) -> u32 {
    return sp.block * sp.tiles * PART_WORDS + (row * 4u + k) * SLOT_WORDS;
}

// Whether the row is drawn (a masked row, or any row of a probe); uniform in the workgroup.
fn row_active(tid: u32, row: u32) -> bool {
    if (tid == 0u) {
        shared_u[7] = select(0u, 1u, tokens[step.draw_row + row] == sp.mask || step.mode >= 3u);
    }
    return workgroupUniformLoad(&shared_u[7]) != 0u;
}

// The row's logits of this tile.
fn tile_range(tile: u32) -> vec2<u32> {
    let lo = min(tile * sp.tile_len, sp.vocab);
    return vec2<u32>(lo, min(lo + sp.tile_len, sp.vocab));
}

#include nucleus.wgsl

fn row_lse(row: u32) -> vec2<f32> {
    let at = slot_at(row, 0u);
    return vec2<f32>(bitcast<f32>(parts[at]), bitcast<f32>(parts[at + 1u]));
}

// ---- passes ----
@compute @workgroup_size(256)
fn stats(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.y;
    let tile = wg.x;
    // Empty the row's histograms for this step.
    for (var i = tile * WG + tid; i < 3u * LEVEL_WORDS; i = i + sp.tiles * WG) {
        atomicStore(&hist[row * 3u * LEVEL_WORDS + i], 0u);
    }
    if (!row_active(tid, row) || step.mode == 4u) {
        return;
    }
    let base = row * sp.vocab;
    let r = tile_range(tile);
    var m = -3.4e38;
    for (var v = r.x + tid; v < r.y; v = v + WG) {
        m = max(m, subs_logit(base, v));
    }
    m = reduce_max(tid, m);
    var s = 0.0;
    for (var v = r.x + tid; v < r.y; v = v + WG) {
        s = s + exp(subs_logit(base, v) - m);
    }
    s = reduce_sum(tid, s);
    if (tid == 0u) {
        let at = part_at(row, tile);
        parts[at] = bitcast<u32>(m);
        parts[at + 1u] = bitcast<u32>(s);
    }
}

// Adds this tile's probabilities in the level's range to the row's histogram of `level`.
fn histogram(tid: u32, row: u32, tile: u32, level: u32, lse: f32, prefix: u32) {
    for (var i = tid; i < LEVEL_WORDS; i = i + WG) {
        atomicStore(&local_hist[i], 0u);
    }
    workgroupBarrier();
    let shift = 30u - 10u * level;
    let base = row * sp.vocab;
    let r = tile_range(tile);
    for (var v = r.x + tid; v < r.y; v = v + WG) {
        let bits = bitcast<u32>(exp(subs_logit(base, v) - lse));
        if ((bits >> (shift + 10u)) == prefix) {
            local_add((bits >> shift) & (BUCKETS - 1u), fixed(bits));
        }
    }
    workgroupBarrier();
    let hb = hist_base(row, level);
    for (var b = tid; b < BUCKETS; b = b + WG) {
        let f = vec2<u32>(atomicLoad(&local_hist[2u * b]), atomicLoad(&local_hist[2u * b + 1u]));
        if (!is_zero64(f)) {
            global_add(hb + 2u * b, f);
        }
    }
}

@compute @workgroup_size(256)
fn hist1(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.y;
    let tile = wg.x;
    if (!row_active(tid, row) || step.mode == 4u) {
        return;
    }
    // The row's statistics from its tiles', in tile order (every workgroup alike).
    var m = -3.4e38;
    for (var t = tid; t < sp.tiles; t = t + WG) {
        m = max(m, bitcast<f32>(parts[part_at(row, t)]));
    }
    m = reduce_max(tid, m);
    var s = 0.0;
    for (var t = tid; t < sp.tiles; t = t + WG) {
        let at = part_at(row, t);
        s = s + bitcast<f32>(parts[at + 1u]) * exp(bitcast<f32>(parts[at]) - m);
    }
    let lse = m + log(reduce_sum(tid, s));
    if (tile == 0u && tid == 0u) {
        let at = slot_at(row, 0u);
        parts[at] = bitcast<u32>(m);
        parts[at + 1u] = bitcast<u32>(lse);
    }
    if (step.top_p < 1.0) {
        histogram(tid, row, tile, 1u, lse, 0u);
    }
}

// Levels 2 and 3: resolve the level above, then histogram the border bucket's elements.
fn refine(tid: u32, wg: vec3<u32>, level: u32) {
    let row = wg.y;
    let tile = wg.x;
    if (!row_active(tid, row) || step.mode == 4u || step.top_p >= 1.0) {
        return;
    }
    let lse = row_lse(row).y;
    let s = resolve(tid, row, level - 1u, load_search(tid, row, level - 2u));
    if (tile == 0u && tid == 0u) {
        store_search(row, level - 1u, s);
    }
    if (s.status == 0u) {
        histogram(tid, row, tile, level, lse, s.prefix);
    }
}

@compute @workgroup_size(256)
fn hist2(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    refine(tid, wg, 2u);
}

@compute @workgroup_size(256)
fn hist3(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    refine(tid, wg, 3u);
}

// The kept set's border and mass (t = 0 and 1 without a nucleus filter).
fn border(tid: u32, row: u32, tile: u32) -> Search {
    if (step.top_p >= 1.0) {
        return Search(1u, 0u, vec2<u32>(0u, 0u), 0u, 1.0);
    }
    let s = resolve(tid, row, 3u, load_search(tid, row, 2u));
    if (tile == 0u && tid == 0u) {
        store_search(row, 3u, s);
    }
    return s;
}

@compute @workgroup_size(256)
fn draw(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.y;
    let tile = wg.x;
    if (!row_active(tid, row)) {
        return;
    }
    let base = row * sp.vocab;
    let r = tile_range(tile);
    let j0 = (step.draw_row + row) * sp.vocab;
    let at = part_at(row, tile);
    if (step.mode == 4u) {
        // Race probe: the row holds the probabilities themselves.
        var best_v = -1.0;
        var best_i = NO_ID;
        for (var v = r.x + tid; v < r.y; v = v + WG) {
            let key = race_key(logits[base + v], j0 + v);
            if (key > best_v) {
                best_v = key;
                best_i = v;
            }
        }
        let out = argmax_reduce(tid, best_v, best_i);
        if (tid == 0u) {
            parts[at + 2u] = bitcast<u32>(red[0]);
            parts[at + 3u] = out;
        }
        return;
    }
    let lse = row_lse(row).y;
    let s = border(tid, row, tile);
    let t = s.t;
    let kept_mass = s.kept;
    if (step.mode == 2u) {
        // t = 0 quirk: the first id removed by the nucleus.
        var first = NO_ID;
        for (var v = r.x + tid; v < r.y; v = v + WG) {
            let pv = exp(subs_logit(base, v) - lse);
            if (v != sp.mask && bitcast<u32>(pv) < t && v < first) {
                first = v;
            }
        }
        first = reduce_min_u32(tid, first);
        if (tid == 0u) {
            parts[at + 6u] = first;
        }
        return;
    }
    if (step.mode == 3u) {
        var count = 0u;
        for (var v = r.x + tid; v < r.y; v = v + WG) {
            if (bitcast<u32>(exp(subs_logit(base, v) - lse)) >= t) {
                count = count + 1u;
            }
        }
        // Counts per tile are at most tile_len: exact in f32.
        let total = reduce_sum(tid, f32(count));
        if (tid == 0u) {
            parts[at + 5u] = u32(total);
        }
        return;
    }
    if (step.mode == 0u) {
        // Entropy of the filtered, renormalised row: -sum q ln q over the kept tokens (a
        // single kept token gives exactly 0, as the reference's f64 does).
        var hs = 0.0;
        for (var v = r.x + tid; v < r.y; v = v + WG) {
            let pv = exp(subs_logit(base, v) - lse);
            if (bitcast<u32>(pv) >= t && pv > 0.0) {
                let q = pv / kept_mass;
                hs = hs - q * log(q);
            }
        }
        let h = reduce_sum(tid, hs);
        if (tid == 0u) {
            parts[at + 4u] = bitcast<u32>(h);
        }
    }
    // The exponential race over the (posterior) row.
    var best_v = -1.0;
    var best_i = NO_ID;
    for (var v = r.x + tid; v < r.y; v = v + WG) {
        let pv = exp(subs_logit(base, v) - lse);
        var q = select(0.0, pv / kept_mass, bitcast<u32>(pv) >= t);
        if (step.mode == 1u) {
            q = q * (1.0 - step.mask_prob);
            if (v == sp.mask) {
                q = step.mask_prob;
            }
        }
        let key = race_key(q, j0 + v);
        if (key > best_v) {
            best_v = key;
            best_i = v;
        }
    }
    let out = argmax_reduce(tid, best_v, best_i);
    if (tid == 0u) {
        parts[at + 2u] = bitcast<u32>(red[0]);
        parts[at + 3u] = out;
    }
}

// This row's entry in the step's row of the entropies.
fn entropy_slot(row: u32) -> u32 {
    return sp.entropy_off + step.index * sp.block + step.draw_row + row;
}

// The row's winner over its tiles' bests (tile order; ties: the lowest id).
fn race_winner(tid: u32, row: u32) -> u32 {
    var best_v = -1.0;
    var best_i = NO_ID;
    for (var t = tid; t < sp.tiles; t = t + WG) {
        let at = part_at(row, t);
        let key = bitcast<f32>(parts[at + 2u]);
        let id = parts[at + 3u];
        if (key > best_v || (key == best_v && id < best_i)) {
            best_v = key;
            best_i = id;
        }
    }
    return argmax_reduce(tid, best_v, best_i);
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.y;
    let vocab = sp.vocab;
    let base = row * vocab;
    // This row's entry in the step's row of the draws table.
    let slot = (step.index * sp.block + step.draw_row + row) * 2u;
    if (!row_active(tid, row)) {
        // A clean row is an exact one-hot: its race has at most two candidates.
        if (tid == 0u) {
            let token = tokens[step.draw_row + row];
            var out = token;
            if (step.mode == 1u) {
                let j0 = (step.draw_row + row) * vocab;
                let keep = race_key(1.0 - step.mask_prob, j0 + token);
                let stay = race_key(step.mask_prob, j0 + sp.mask);
                if (stay > keep) {
                    out = sp.mask;
                }
            } else if (step.mode == 2u) {
                // q = onehot * inf: NaN everywhere but the token; MASK is overwritten by -inf.
                out = 0u;
                while (out == token || out == sp.mask) {
                    out = out + 1u;
                }
            }
            draws[slot] = out;
            draws[slot + 1u] = bitcast<u32>(1.0);
            draws[entropy_slot(row)] = bitcast<u32>(0.0);
        }
        return;
    }
    if (step.mode == 4u) {
        let out = race_winner(tid, row);
        if (tid == 0u) {
            draws[slot] = out;
            draws[slot + 1u] = bitcast<u32>(logits[base + out]);
        }
        return;
    }
    let lse = row_lse(row).y;
    var t = 0u;
    var kept_mass = 1.0;
    if (step.top_p < 1.0) {
        let at = slot_at(row, 3u);
        t = parts[at + 4u];
        kept_mass = bitcast<f32>(parts[at + 5u]);
    }
    if (step.mode == 2u) {
        var first = NO_ID;
        for (var tl = tid; tl < sp.tiles; tl = tl + WG) {
            first = min(first, parts[part_at(row, tl) + 6u]);
        }
        first = reduce_min_u32(tid, first);
        if (tid == 0u) {
            let out = select(first, 0u, first == NO_ID);
            let pv = exp(subs_logit(base, out) - lse);
            draws[slot] = out;
            draws[slot + 1u] = bitcast<u32>(select(0.0, pv / kept_mass, bitcast<u32>(pv) >= t));
        }
        return;
    }
    if (step.mode == 3u) {
        if (tid == 0u) {
            var count = 0u;
            for (var tl = 0u; tl < sp.tiles; tl = tl + 1u) {
                count = count + parts[part_at(row, tl) + 5u];
            }
            draws[slot] = count;
            draws[slot + 1u] = bitcast<u32>(kept_mass);
        }
        return;
    }
    if (step.mode == 0u) {
        var h = 0.0;
        for (var tl = tid; tl < sp.tiles; tl = tl + WG) {
            h = h + bitcast<f32>(parts[part_at(row, tl) + 4u]);
        }
        h = reduce_sum(tid, h);
        if (tid == 0u) {
            draws[entropy_slot(row)] = bitcast<u32>(h);
        }
    }
    let out = race_winner(tid, row);
    if (tid == 0u) {
        let pv = exp(subs_logit(base, out) - lse);
        draws[slot] = out;
        draws[slot + 1u] = bitcast<u32>(select(0.0, pv / kept_mass, bitcast<u32>(pv) >= t));
    }
}
