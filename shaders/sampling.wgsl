// Sampling on the GPU (spec §4.5, §9): SUBS log-softmax, the nucleus filter, the posterior row
// and the exponential race with the fixtures' SplitMix64 uniforms, one workgroup per row.
// Only the drawn token id and its probability are written (to the step's row of the draws
// table), never the logits; in first-hitting mode also the entropy (nats) of the row's
// nucleus-filtered, renormalised p_x0, for the entropy-bounded reveal stage.
//
// f32 differs from the reference's f64 in two places: the nucleus border (the kept set is
// found by an 8-ary search over the probabilities' bit patterns with f32 mass sums) and
// near-ties of the race; docs/performance.md reports how often on the fixtures.
//
// Modes (Step.mode): 0 = first hitting (draw from p_x0), 1 = posterior, 2 = posterior at
// t = 0 with the reference quirk (every masked row becomes the first nucleus-removed id,
// else 0), 3 = nucleus probe (kept count, kept mass), 4 = race probe (the rows hold q).
//
// `reveal` (REVEAL_* variants) is the select stage of a step of a block: it picks the rows the
// step reveals from the step's draws, writes their ids into the device-side block (which the
// next step's embedding reads) and appends them to the block's reveal log, read back once per
// block.
//   REVEAL_SCHEDULED: the row the host chose in advance (first hitting, Step.reveal_row).
//   REVEAL_CONFIDENCE: every masked row whose drawn token has probability >= Step.bound, at
//     least the most confident one (ties: the lowest row) - sampler::select_confident.
//   REVEAL_ENTROPY: the masked rows sorted by entropy (total order, ties: the lowest row), the
//     longest prefix whose f32 sum before its last (largest) entropy is <= Step.bound, at
//     least one - sampler::select_low_entropy.
// The two parallel stages also end their block early: once no row is masked they zero the
// indirect dispatch arguments that the block's later steps are recorded with, so those steps
// launch no workgroup.
#flags REVEAL_SCHEDULED REVEAL_CONFIDENCE REVEAL_ENTROPY

#include uniforms.wgsl

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> sp: SampleParams;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
// The device-side block: read by `main`, written by `reveal`.
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;
// [step, block row] -> (id, value bits), then from sp.entropy_off [step, block row] -> entropy.
@group(0) @binding(4) var<storage, read_write> draws: array<u32>;
// [count, then (step, row, id, confidence bits) per reveal].
@group(0) @binding(5) var<storage, read_write> reveal_log: array<u32>;

var<workgroup> red: array<f32, 2048>;
var<workgroup> best_idx: array<u32, 256>;
var<workgroup> shared_u: array<u32, 4>;
var<workgroup> shared_f: array<f32, 4>;

// ---- SplitMix64 on (lo, hi) u32 pairs ----
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

// Largest key, lowest index on ties (torch.argmax), over the workgroup.
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

// This row's entry in the step's row of the entropies.
fn entropy_slot_of(row: u32) -> u32 {
    return sp.entropy_off + step.index * sp.block + step.draw_row + row;
}

var<private> this_row: u32;

fn entropy_slot() -> u32 {
    return entropy_slot_of(this_row);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row = wg.x;
    this_row = row;
    let vocab = sp.vocab;
    let base = row * vocab;
    // This row's entry in the step's row of the draws table.
    let slot = (step.index * sp.block + step.draw_row + row) * 2u;
    if (tid == 0u) {
        shared_u[0] = tokens[step.draw_row + row];
    }
    let token = workgroupUniformLoad(&shared_u[0]);
    if (token != sp.mask && step.mode < 3u) {
        // A clean row is an exact one-hot: its race has at most two candidates.
        if (tid == 0u) {
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
            draws[entropy_slot()] = bitcast<u32>(0.0);
        }
        return;
    }

    if (step.mode == 4u) {
        // Race probe: the row holds the probabilities themselves.
        let j0 = (step.draw_row + row) * vocab;
        var best_v = -1.0;
        var best_i = 0xffffffffu;
        for (var v = tid; v < vocab; v = v + WG) {
            let key = race_key(logits[base + v], j0 + v);
            if (key > best_v) {
                best_v = key;
                best_i = v;
            }
        }
        let out = argmax_reduce(tid, best_v, best_i);
        if (tid == 0u) {
            draws[slot] = out;
            draws[slot + 1u] = bitcast<u32>(logits[base + out]);
        }
        return;
    }

    // SUBS log-softmax statistics.
    var mx = -3.4e38;
    for (var v = tid; v < vocab; v = v + WG) {
        mx = max(mx, subs_logit(base, v));
    }
    mx = reduce_max(tid, mx);
    var s = 0.0;
    for (var v = tid; v < vocab; v = v + WG) {
        s = s + exp(subs_logit(base, v) - mx);
    }
    let lse = mx + log(reduce_sum(tid, s));

    // Nucleus: smallest bit pattern t with mass(p >= t) <= top_p (8-ary search).
    var t = 0u;
    var kept_mass = 1.0;
    if (step.top_p < 1.0) {
        if (tid == 0u) {
            shared_u[1] = 0u;
            shared_u[2] = 0x7f800000u;
            shared_f[0] = 0.0;
        }
        var lo = workgroupUniformLoad(&shared_u[1]);
        var hi = workgroupUniformLoad(&shared_u[2]);
        loop {
            if (hi - lo <= 1u) {
                break;
            }
            let width = max((hi - lo) / 8u, 1u);
            var bucket: array<f32, 8>;
            for (var b = 0u; b < 8u; b = b + 1u) {
                bucket[b] = 0.0;
            }
            for (var v = tid; v < vocab; v = v + WG) {
                let pv = exp(subs_logit(base, v) - lse);
                let bits = bitcast<u32>(pv);
                if (bits >= lo && bits < hi) {
                    bucket[min((bits - lo) / width, 7u)] += pv;
                }
            }
            for (var b = 0u; b < 8u; b = b + 1u) {
                red[b * WG + tid] = bucket[b];
            }
            workgroupBarrier();
            for (var st = 128u; st > 0u; st = st >> 1u) {
                if (tid < st) {
                    for (var b = 0u; b < 8u; b = b + 1u) {
                        red[b * WG + tid] = red[b * WG + tid] + red[b * WG + tid + st];
                    }
                }
                workgroupBarrier();
            }
            if (tid == 0u) {
                // Scan boundaries b_i = lo + i * width from the top: mass(p >= b_i) grows as
                // i falls; the answer lies between the last b_i within top_p and the next.
                var cum = shared_f[0];
                var new_lo = lo;
                var new_hi = hi;
                var new_mass = cum;
                var i = 8u;
                loop {
                    if (i == 0u) {
                        break;
                    }
                    i = i - 1u;
                    cum = cum + red[i * WG];
                    let b = min(lo + i * width, hi);
                    if (cum > step.top_p) {
                        new_lo = b;
                        break;
                    }
                    new_hi = b;
                    new_mass = cum;
                }
                if (new_hi == lo) {
                    new_lo = lo;
                }
                shared_u[1] = new_lo;
                shared_u[2] = new_hi;
                shared_f[0] = new_mass;
            }
            lo = workgroupUniformLoad(&shared_u[1]);
            hi = workgroupUniformLoad(&shared_u[2]);
        }
        t = hi;
        kept_mass = workgroupUniformLoad(&shared_f[0]);
        if (kept_mass <= 0.0) {
            // Even the largest probability exceeds top_p: keep the maximum alone (spec §9.4).
            t = bitcast<u32>(exp(mx - lse));
            var m = 0.0;
            for (var v = tid; v < vocab; v = v + WG) {
                let pv = exp(subs_logit(base, v) - lse);
                if (bitcast<u32>(pv) >= t) {
                    m = m + pv;
                }
            }
            kept_mass = reduce_sum(tid, m);
        }
    }

    if (step.mode == 2u) {
        // t = 0 quirk: the first id removed by the nucleus (NaN in the reference), else 0.
        var first = 0xffffffffu;
        for (var v = tid; v < vocab; v = v + WG) {
            let pv = exp(subs_logit(base, v) - lse);
            if (v != sp.mask && bitcast<u32>(pv) < t && v < first) {
                first = v;
            }
        }
        best_idx[tid] = first;
        workgroupBarrier();
        for (var st = 128u; st > 0u; st = st >> 1u) {
            if (tid < st) {
                best_idx[tid] = min(best_idx[tid], best_idx[tid + st]);
            }
            workgroupBarrier();
        }
        if (tid == 0u) {
            var out = best_idx[0];
            if (out == 0xffffffffu) {
                out = 0u;
            }
            let pv = exp(subs_logit(base, out) - lse);
            draws[slot] = out;
            draws[slot + 1u] = bitcast<u32>(select(0.0, pv / kept_mass, bitcast<u32>(pv) >= t));
        }
        return;
    }

    if (step.mode == 3u) {
        // Nucleus probe: kept count and kept mass instead of a draw.
        var count = 0.0;
        for (var v = tid; v < vocab; v = v + WG) {
            if (bitcast<u32>(exp(subs_logit(base, v) - lse)) >= t) {
                count = count + 1.0;
            }
        }
        count = reduce_sum(tid, count);
        if (tid == 0u) {
            draws[slot] = u32(count);
            draws[slot + 1u] = bitcast<u32>(kept_mass);
        }
        return;
    }

    if (step.mode == 0u) {
        // Entropy of the filtered, renormalised row: -sum q ln q over the kept tokens (a
        // single kept token gives exactly 0, as the reference's f64 does).
        var hs = 0.0;
        for (var v = tid; v < vocab; v = v + WG) {
            let pv = exp(subs_logit(base, v) - lse);
            if (bitcast<u32>(pv) >= t && pv > 0.0) {
                let q = pv / kept_mass;
                hs = hs - q * log(q);
            }
        }
        let entropy = reduce_sum(tid, hs);
        if (tid == 0u) {
            draws[entropy_slot()] = bitcast<u32>(entropy);
        }
    }

    // The exponential race over the (posterior) row.
    let j0 = (step.draw_row + row) * vocab;
    var best_v = -1.0;
    var best_i = 0xffffffffu;
    for (var v = tid; v < vocab; v = v + WG) {
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
        let pv = exp(subs_logit(base, out) - lse);
        draws[slot] = out;
        draws[slot + 1u] = bitcast<u32>(select(0.0, pv / kept_mass, bitcast<u32>(pv) >= t));
    }
}

#if REVEAL_SCHEDULED
@compute @workgroup_size(64)
fn reveal(@builtin(local_invocation_index) tid: u32) {
    if (tid == 0u) {
        let row = step.reveal_row;
        let d = (step.index * sp.block + row) * 2u;
        let id = draws[d];
        tokens[row] = id;
        let n = reveal_log[0];
        reveal_log[1u + 4u * n] = step.index;
        reveal_log[2u + 4u * n] = row;
        reveal_log[3u + 4u * n] = id;
        reveal_log[4u + 4u * n] = draws[d + 1u];
        reveal_log[0] = n + 1u;
    }
}
#else
// The indirect dispatch arguments of the block's later steps (block.rs).
@group(0) @binding(6) var<storage, read_write> next_args: array<u32>;

// Rows of a block the parallel stages handle (one thread sorts them).
const MAX_BLOCK: u32 = 16u;

var<workgroup> block_done: u32;

// f32 total order (f32::total_cmp) as an unsigned key.
fn total_order(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

// The masked rows this step reveals, as a bit mask of block rows.
fn select_rows(n: u32, rows: ptr<function, array<u32, MAX_BLOCK>>, keys: ptr<function, array<f32, MAX_BLOCK>>) -> u32 {
    var chosen = 0u;
#if REVEAL_CONFIDENCE
    var best = 0u;
    for (var i = 0u; i < n; i = i + 1u) {
        if ((*keys)[i] >= step.bound) {
            chosen = chosen | (1u << (*rows)[i]);
        }
        if ((*keys)[i] > (*keys)[best]) {
            best = i;
        }
    }
    if (chosen == 0u && n > 0u) {
        chosen = 1u << (*rows)[best];
    }
#else
    // Insertion sort of the candidates (in row order) by entropy: stable, so ties keep the
    // lower row first.
    var order: array<u32, MAX_BLOCK>;
    for (var i = 0u; i < n; i = i + 1u) {
        order[i] = i;
        var j = i;
        loop {
            if (j == 0u) {
                break;
            }
            if (total_order((*keys)[order[j - 1u]]) <= total_order((*keys)[i])) {
                break;
            }
            order[j] = order[j - 1u];
            j = j - 1u;
        }
        order[j] = i;
    }
    var before = 0.0;
    for (var i = 0u; i < n; i = i + 1u) {
        if (i > 0u && before > step.bound) {
            break;
        }
        chosen = chosen | (1u << (*rows)[order[i]]);
        before = before + (*keys)[order[i]];
    }
#endif
    return chosen;
}

@compute @workgroup_size(64)
fn reveal(@builtin(local_invocation_index) tid: u32) {
    if (tid == 0u) {
        let first = step.index * sp.block;
        var rows: array<u32, MAX_BLOCK>;
        var keys: array<f32, MAX_BLOCK>;
        var n = 0u;
        for (var r = 0u; r < min(sp.block, MAX_BLOCK); r = r + 1u) {
            if (tokens[r] == sp.mask) {
                rows[n] = r;
#if REVEAL_CONFIDENCE
                keys[n] = bitcast<f32>(draws[(first + r) * 2u + 1u]);
#else
                keys[n] = bitcast<f32>(draws[sp.entropy_off + first + r]);
#endif
                n = n + 1u;
            }
        }
        let chosen = select_rows(n, &rows, &keys);
        var count = reveal_log[0];
        var left = n;
        for (var r = 0u; r < min(sp.block, MAX_BLOCK); r = r + 1u) {
            if ((chosen & (1u << r)) != 0u) {
                let d = (first + r) * 2u;
                let id = draws[d];
                tokens[r] = id;
                reveal_log[1u + 4u * count] = step.index;
                reveal_log[2u + 4u * count] = r;
                reveal_log[3u + 4u * count] = id;
                reveal_log[4u + 4u * count] = draws[d + 1u];
                count = count + 1u;
                left = left - 1u;
            }
        }
        reveal_log[0] = count;
        block_done = select(0u, 1u, left == 0u);
    }
    if (workgroupUniformLoad(&block_done) != 0u) {
        for (var i = tid; i < arrayLength(&next_args); i = i + 64u) {
            next_args[i] = 0u;
        }
    }
}
#endif
