// The nucleus border of sampling.wgsl: masses as 64-bit fixed-point integers and the search
// over a row's three histogram levels. Included by sampling.wgsl after its bindings and
// workgroup variables.

// ---- 64-bit fixed-point masses (units of 2^-60) ----
// p (f32 bits, p < 16) as a (lo, hi) integer: exact for p >= 2^-36, truncated below.
fn fixed(bits: u32) -> vec2<u32> {
    let e = i32((bits >> 23u) & 0xffu);
    if (e == 0) {
        return vec2<u32>(0u, 0u);
    }
    let m = (bits & 0x7fffffu) | 0x800000u;
    // p = m * 2^(e - 150), so p * 2^60 = m * 2^(e - 90).
    let s = e - 90;
    if (s <= -24) {
        return vec2<u32>(0u, 0u);
    }
    if (s < 0) {
        return vec2<u32>(m >> u32(-s), 0u);
    }
    if (s == 0) {
        return vec2<u32>(m, 0u);
    }
    if (s < 32) {
        return vec2<u32>(m << u32(s), m >> u32(32 - s));
    }
    return vec2<u32>(0u, m << u32(s - 32));
}

fn fixed_to_f32(a: vec2<u32>) -> f32 {
    return f32(a.y) * exp2(-28.0) + f32(a.x) * exp2(-60.0);
}

// a > b as 64-bit integers.
fn greater64(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.y > b.y || (a.y == b.y && a.x > b.x);
}

fn is_zero64(a: vec2<u32>) -> bool {
    return (a.x | a.y) == 0u;
}

fn local_add(bucket: u32, f: vec2<u32>) {
    var hi = f.y;
    if (f.x != 0u) {
        let old = atomicAdd(&local_hist[2u * bucket], f.x);
        hi = hi + select(0u, 1u, old + f.x < old);
    }
    if (hi != 0u) {
        atomicAdd(&local_hist[2u * bucket + 1u], hi);
    }
}

fn global_add(at: u32, f: vec2<u32>) {
    var hi = f.y;
    if (f.x != 0u) {
        let old = atomicAdd(&hist[at], f.x);
        hi = hi + select(0u, 1u, old + f.x < old);
    }
    if (hi != 0u) {
        atomicAdd(&hist[at + 1u], hi);
    }
}

fn hist_base(row: u32, level: u32) -> u32 {
    return (row * 3u + level - 1u) * LEVEL_WORDS;
}

// ---- the nucleus search ----
// The search after level k-1 (k = 1: nothing resolved yet), read by every workgroup.
struct Search {
    status: u32,
    prefix: u32,
    above: vec2<u32>,
    t: u32,
    kept: f32,
}

fn load_search(tid: u32, row: u32, k: u32) -> Search {
    if (k == 0u) {
        return Search(0u, 0u, vec2<u32>(0u, 0u), 0u, 0.0);
    }
    let at = slot_at(row, k);
    if (tid == 0u) {
        for (var i = 0u; i < 6u; i = i + 1u) {
            shared_u[i] = parts[at + i];
        }
    }
    return Search(
        workgroupUniformLoad(&shared_u[0]),
        workgroupUniformLoad(&shared_u[1]),
        vec2<u32>(workgroupUniformLoad(&shared_u[2]), workgroupUniformLoad(&shared_u[3])),
        workgroupUniformLoad(&shared_u[4]),
        bitcast<f32>(workgroupUniformLoad(&shared_u[5])),
    );
}

fn store_search(row: u32, k: u32, s: Search) {
    let at = slot_at(row, k);
    parts[at] = s.status;
    parts[at + 1u] = s.prefix;
    parts[at + 2u] = s.above.x;
    parts[at + 3u] = s.above.y;
    parts[at + 4u] = s.t;
    parts[at + 5u] = bitcast<u32>(s.kept);
}

// Resolves level `level` of the row's histogram: the largest bucket i with
// s.above + mass(buckets >= i) > top_p. Returns the search after that level.
fn resolve(tid: u32, row: u32, level: u32, s_in: Search) -> Search {
    var s = s_in;
    if (s.status != 0u) {
        return s;
    }
    let top = fixed(bitcast<u32>(step.top_p));
    let hb = hist_base(row, level);
    // Thread k owns buckets 4k..4k+3; suffix sums over threads (Hillis-Steele, 64-bit).
    var own: array<vec2<u32>, 4>;
    var sum = vec2<u32>(0u, 0u);
    for (var j = 0u; j < 4u; j = j + 1u) {
        let b = 4u * tid + j;
        own[j] = vec2<u32>(atomicLoad(&hist[hb + 2u * b]), atomicLoad(&hist[hb + 2u * b + 1u]));
        sum = add64(sum, own[j]);
    }
    scan_lo[tid] = sum.x;
    scan_hi[tid] = sum.y;
    if (tid == 0u) {
        found_u[0] = NO_ID;
    }
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off << 1u) {
        var other = vec2<u32>(0u, 0u);
        if (tid + off < WG) {
            other = vec2<u32>(scan_lo[tid + off], scan_hi[tid + off]);
        }
        workgroupBarrier();
        let mine = add64(vec2<u32>(scan_lo[tid], scan_hi[tid]), other);
        scan_lo[tid] = mine.x;
        scan_hi[tid] = mine.y;
        workgroupBarrier();
    }
    // Mass of the buckets above this thread's, plus what lies above the level.
    var above = s.above;
    if (tid + 1u < WG) {
        above = add64(above, vec2<u32>(scan_lo[tid + 1u], scan_hi[tid + 1u]));
    }
    var found = NO_ID;
    var found_above = vec2<u32>(0u, 0u);
    var found_mass = vec2<u32>(0u, 0u);
    for (var jj = 0u; jj < 4u; jj = jj + 1u) {
        let j = 3u - jj;
        let with_bucket = add64(above, own[j]);
        if (found == NO_ID && greater64(with_bucket, top)) {
            found = 4u * tid + j;
            found_above = above;
            found_mass = own[j];
        }
        above = with_bucket;
    }
    // Suffix sums fall as the bucket rises, so one bucket at most crosses top_p.
    if (found != NO_ID) {
        found_u[0] = found;
        found_u[1] = found_above.x;
        found_u[2] = found_above.y;
        found_u[3] = found_mass.x;
        found_u[4] = found_mass.y;
    }
    // Every field through workgroupUniformLoad: the search steers the later barriers.
    let i = workgroupUniformLoad(&found_u[0]);
    if (i == NO_ID) {
        // The whole row fits in top_p (only possible at level 1): keep everything.
        let total = vec2<u32>(workgroupUniformLoad(&scan_lo[0]), workgroupUniformLoad(&scan_hi[0]));
        s.status = 1u;
        s.t = 0u;
        s.kept = fixed_to_f32(add64(s.above, total));
        return s;
    }
    let bucket_above = vec2<u32>(workgroupUniformLoad(&found_u[1]), workgroupUniformLoad(&found_u[2]));
    let bucket_mass = vec2<u32>(workgroupUniformLoad(&found_u[3]), workgroupUniformLoad(&found_u[4]));
    s.prefix = (s.prefix << 10u) | i;
    s.above = bucket_above;
    if (level == 3u) {
        s.status = 1u;
        if (is_zero64(bucket_above)) {
            // Even the largest probability exceeds top_p: it is kept alone (with its ties).
            s.t = s.prefix;
            s.kept = fixed_to_f32(bucket_mass);
        } else {
            s.t = s.prefix + 1u;
            s.kept = fixed_to_f32(bucket_above);
        }
    }
    return s;
}

