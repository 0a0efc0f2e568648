// The select stage of a step of a block (spec §9.3, the parallel samplers): it picks the rows
// the step reveals from the step's draws (sampling.wgsl), writes their ids into the
// device-side block (which the next step's embedding reads) and appends them to the block's
// reveal log, read back once per block.
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

@group(0) @binding(0) var<uniform> sp: SampleParams;
@group(0) @binding(1) var<uniform> step: Step;
// The device-side block.
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;
// [step, block row] -> (id, value bits), then from sp.entropy_off [step, block row] -> entropy.
@group(0) @binding(4) var<storage, read_write> draws: array<u32>;
// [count, then (step, row, id, confidence bits) per reveal].
@group(0) @binding(5) var<storage, read_write> reveal_log: array<u32>;

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
