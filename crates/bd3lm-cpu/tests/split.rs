//! The engine with every matrix split by outputs across parties (the page's CPU engine on
//! several Web Workers, issue 19) gives bit-identical logits to one engine: each output is
//! computed whole by one party with the same kernel. The parties here are in-process (the
//! page's go through a `SharedArrayBuffer`, `worker_split`, checked by the e2e test); the
//! slices are built the way the workers build them, from row pieces of the package.
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::fixture::Fixture;
use bd3lm::package::{quantize_weights, SchemePlan, TensorPiece};
use bd3lm::quant::{Matrix, Scheme};
use bd3lm::{Engine, Weights};
use bd3lm_cpu::matmul::{matmul_columns, MatmulScratch};
use bd3lm_cpu::split::{
    self, slice_rows, split_matrix_names, PartSlices, SplitMatmul, SplitMatrix,
};
use bd3lm_cpu::threads::Pool;
use bd3lm_cpu::{CpuEngine, CpuOptions, Simd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The other parties, computing in turn on the calling thread.
struct InProcessSplit {
    simd: Simd,
    addresses: Vec<usize>,
    outputs: Vec<usize>,
    /// Per other party, per split matrix: (first output, slice).
    others: Vec<Vec<(usize, Matrix)>>,
    x: Mutex<Vec<f32>>,
}

impl SplitMatmul for InProcessSplit {
    fn locate(&self, w: &Matrix) -> Option<SplitMatrix> {
        let index = self
            .addresses
            .iter()
            .position(|&a| a == w as *const Matrix as usize)?;
        Some(SplitMatrix {
            index,
            outputs: self.outputs[index],
            local_start: 0,
        })
    }

    fn start(&self, _m: SplitMatrix, x: &[f32], _rows: usize) {
        *self.x.lock().expect("lock") = x.to_vec();
    }

    fn finish(&self, m: SplitMatrix, rows: usize, out: &mut [f32]) {
        let x = self.x.lock().expect("lock");
        let pool = Pool::new(Some(1)).expect("pool");
        for party in &self.others {
            let (start, slice) = &party[m.index];
            let mut scratch = MatmulScratch::default();
            matmul_columns(
                &pool,
                self.simd,
                slice,
                &x,
                rows,
                out,
                (m.outputs, *start),
                &mut scratch,
            );
        }
    }
}

/// Every split matrix of `w` as row pieces of 40 rows (so pieces straddle the parts).
fn pieces(w: &Weights) -> Vec<(String, TensorPiece)> {
    let mut whole: Vec<&Matrix> = w.layers.iter().flat_map(|l| l.matrices().map(|(_, m)| m)).collect();
    whole.push(&w.lm_head);
    let mut out = Vec::new();
    for (name, m) in split_matrix_names(&w.config).into_iter().zip(whole) {
        for start in (0..m.rows).step_by(40) {
            let end = (start + 40).min(m.rows);
            out.push((
                name.clone(),
                TensorPiece::Rows {
                    start_row: start,
                    total_rows: m.rows,
                    matrix: slice_rows(m, start..end),
                },
            ));
        }
    }
    out
}

/// Party `part`'s slices, built as a worker builds them.
fn slices(w: &Weights, part: usize, parts: usize) -> Vec<(usize, Matrix)> {
    let mut s = PartSlices::new(&w.config, part, parts);
    for (name, piece) in pieces(w) {
        assert!(s.put(&name, piece).is_none());
    }
    s.finish().expect("slices")
}

/// Party 0's engine, the other parties behind the hook.
fn split_engine(w: &Weights, parts: usize, simd: Simd) -> CpuEngine {
    let mut own = slices(w, 0, parts).into_iter().map(|(_, m)| m);
    let mut mine = w.clone();
    for l in &mut mine.layers {
        for m in [&mut l.qkv, &mut l.attn_out, &mut l.mlp_in, &mut l.mlp_out] {
            *m = own.next().expect("slice");
        }
    }
    mine.lm_head = own.next().expect("slice");
    let mine = Arc::new(mine);
    let options = CpuOptions {
        threads: Some(2),
        simd: Some(simd),
        ..CpuOptions::default()
    };
    let mut engine = CpuEngine::new(mine.clone(), options).expect("engine");
    engine.set_split(Box::new(InProcessSplit {
        simd,
        addresses: split::matrix_addresses(&mine),
        outputs: split::split_outputs(&w.config),
        others: (1..parts).map(|p| slices(w, p, parts)).collect(),
        x: Mutex::new(Vec::new()),
    }));
    engine
}

fn logits(engine: &mut CpuEngine, prefix: &[Vec<u32>], block: &[u32]) -> Vec<f32> {
    engine.reset();
    for b in prefix {
        pollster::block_on(engine.commit(b)).expect("commit");
    }
    pollster::block_on(engine.logits(block)).expect("logits")
}

#[test]
fn split_matrices_give_bit_identical_logits() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs16");
    let fx = Fixture::from_dir(&dir).expect("fixture");
    let cfg = fx.weights.config.clone();
    let (b, v) = (cfg.block_size, cfg.vocab_size);
    // Two committed blocks: the second call folds a store pass in (twice the rows).
    let prefix: Vec<Vec<u32>> = (0..2)
        .map(|i| (0..b).map(|j| ((i * 31 + j * 7) % (v - 2)) as u32).collect())
        .collect();
    let mut block: Vec<u32> = (0..b).map(|j| (j * 13 % (v - 2)) as u32).collect();
    block[5] = cfg.mask_id();
    for scheme in [Scheme::F32, Scheme::Q8, Scheme::Q4] {
        let weights = quantize_weights(&fx.weights, SchemePlan::for_format(scheme));
        for simd in Simd::available() {
            let options = CpuOptions {
                simd: Some(simd),
                ..CpuOptions::default()
            };
            let mut one = CpuEngine::new(weights.clone(), options).expect("engine");
            let expected = logits(&mut one, &prefix, &block);
            for parts in [2, 3, split::max_parts(&cfg)] {
                let mut split = split_engine(&weights, parts, simd);
                let got = logits(&mut split, &prefix, &block);
                let same = got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same && got.len() == expected.len(),
                    "{scheme:?} {} on {parts} parties: logits differ",
                    simd.name()
                );
            }
        }
    }
}
