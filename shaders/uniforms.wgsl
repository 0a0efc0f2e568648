// The uniform structs the host writes, declared once and included by every kernel. Mirrored
// field for field by `crates/bd3lm-gpu/src/dispatch.rs` (whose test checks the sizes against
// this file). Every field is a 32-bit scalar, so the WGSL and C layouts agree.

// Where a matrix's rows live (weights.wgsl): one or two storage bindings.
struct WeightParams {
    k: u32,
    // First row held by the second binding (the row count when there is one binding).
    split_row: u32,
    // Word offsets of the scales regions of the two bindings (quantized formats).
    scale_off0: u32,
    scale_off1: u32,
}

// One slot per step of a block, 256 bytes apart and bound with a dynamic offset, so the steps
// of one submission differ without a host round trip. Slot B (the block size) belongs to the
// store pass, which may wait in the queue while the next block's slots are written.
//
// The rows of a model call: `clean_rows` rows of a clean block whose K/V are stored (B for a
// store pass, alone or folded into the next block's first call; else 0), then the rows of the
// block being denoised, `rows` in all (B, or 2B for a folded call). Each of the two groups
// attends over its own window of the ring cache (block-causal: the clean rows never see the
// denoised rows).
struct Step {
    // The denoised block's window: committed tokens in it, the ring slot of its position 0.
    cached: u32,
    ring_start: u32,
    // Positions of the RoPE table (the model's context).
    n_ctx: u32,
    // First row of the denoised block the LM head and the sampler draw: the scheduled row
    // when only the revealed row is drawn, else 0.
    draw_row: u32,
    // SplitMix64 seed of the step's uniform stream.
    seed_lo: u32,
    seed_hi: u32,
    // Step index inside the block: where its draws and reveals are written.
    index: u32,
    // The row a scheduled reveal (first hitting) uncovers at this step.
    reveal_row: u32,
    // Sampling mode (sampling.wgsl) and its parameters.
    mode: u32,
    top_p: f32,
    mask_prob: f32,
    // Keys of the denoised block's window per attention split (attention.wgsl).
    kv_split: u32,
    // Ring slots of the KV cache: the context plus one block, so that a folded call's
    // denoised rows never overwrite keys its clean rows still read when the window slides.
    ring: u32,
    // Rows of the call, and how many of them (at the front) are the clean block's.
    rows: u32,
    clean_rows: u32,
    // The clean block's window (before the block is appended) and its attention split.
    clean_cached: u32,
    clean_ring_start: u32,
    clean_kv_split: u32,
    // The confidence threshold or entropy bound of a parallel reveal stage.
    bound: f32,
    _pad: u32,
}

// A projection or the LM head: y = x W^T over a block's rows.
struct MatmulParams {
    // Output columns (matrix rows).
    n: u32,
    // Inputs per K split (a multiple of 8; K when the matrix is not split along K).
    k_slice: u32,
    // Offset into `vecs` (floats) of the bias (EPI_BIAS, EPI_GELU).
    bias_off: u32,
    // EPI_QKV: hidden size and the layer's first float in the caches.
    hidden: u32,
    cache_layer_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Residual update plus the next LayerNorm (residual.wgsl, embed.wgsl).
struct NormParams {
    // Row width (hidden size).
    n: u32,
    // K splits whose partial sums are added (residual.wgsl).
    splits: u32,
    // Offsets into `vecs` (floats): gate and bias of the residual branch...
    gate_off: u32,
    bias_off: u32,
    // ...and the weight, shift and scale of the LayerNorm + modulation that follows.
    norm_off: u32,
    shift_off: u32,
    scale_off: u32,
    _pad: u32,
}

// Block attention over the ring KV cache (attention.wgsl).
struct AttnParams {
    hidden: u32,
    heads: u32,
    // The layer's first float in the caches.
    cache_layer_off: u32,
    scale: f32,
}

// The sampler's model constants (sampling.wgsl).
struct SampleParams {
    vocab: u32,
    mask: u32,
    // Rows of the block (the stride of the draws table).
    block: u32,
    // Word offset in the draws table of the entropies ([step, block row] -> f32 bits).
    entropy_off: u32,
    // Tiles per row of the passes over the logits, and logits per tile (a multiple of 256).
    tiles: u32,
    tile_len: u32,
    _pad0: u32,
    _pad1: u32,
}
