//! The engine with every matrix split by outputs across parties (the page's CPU engine on
//! several Web Workers, issue 19) gives bit-identical logits to one engine: each output is
//! computed whole by one party with the same kernel. The parties here are in-process (the
//! page's go through a `SharedArrayBuffer`, `worker_split`, checked by the e2e test); each
//! party reads its part of the package's shards the way a worker does (`shard_part`).
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::fixture::Fixture;
use bd3lm::package::{
    build_package, quantize_weights, read_shard, slice_rows, PackageFiles, SchemePlan,
    SpecialTokens, WeightsBuilder,
};
use bd3lm::quant::{Matrix, Scheme};
use bd3lm::{Engine, EngineProbes, Weights};
use bd3lm_cpu::matmul::{matmul_columns, Epilogue, MatmulScratch};
use bd3lm_cpu::shard_part::{read_shard_part, Keep};
use bd3lm_cpu::split::{self, PartSlices, SplitMatmul, SplitMatrix};
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
                Epilogue::None,
                &mut scratch,
            );
        }
    }
}

/// A package of `w` in memory, in 40 kB shards (so matrices come in row pieces, some
/// straddling the parts).
fn package(w: &Weights) -> PackageFiles {
    let special = SpecialTokens {
        bos: 0,
        eos: 0,
        mask: w.config.mask_id(),
    };
    build_package(
        "t",
        "mixed",
        w,
        b"{}",
        special,
        serde_json::Value::Null,
        40_000,
    )
    .expect("package")
}

fn shards(pkg: &PackageFiles) -> impl Iterator<Item = &(String, Vec<u8>)> {
    pkg.files
        .iter()
        .filter(|(name, _)| name.ends_with(".safetensors"))
}

/// Party `part` of `parts`, read from the shards as a worker reads them: party 0's weights
/// (its slices of the split matrices, everything else whole), and every party's slices.
fn party(pkg: &PackageFiles, part: usize, parts: usize) -> (Option<Weights>, Vec<(usize, Matrix)>) {
    let cfg = pkg.manifest.model_config().expect("config");
    let mut slices = PartSlices::new(&cfg, part, parts);
    let mut builder = WeightsBuilder::new(cfg);
    for (file, bytes) in shards(pkg) {
        let pieces =
            read_shard_part(&pkg.manifest, file, &bytes[..], |n| slices.keep(n)).expect("read");
        for (name, piece) in pieces {
            if part == 0 {
                builder.put(name.clone(), piece.clone());
            }
            slices.add(&name, piece);
        }
    }
    let weights = (part == 0).then(|| builder.finish().expect("weights"));
    (weights, slices.finish().expect("slices"))
}

/// Party 0's engine, the other parties behind the hook.
fn split_engine(pkg: &PackageFiles, parts: usize, simd: Simd) -> CpuEngine {
    let (mine, _) = party(pkg, 0, parts);
    let mine = Arc::new(mine.expect("party 0 has weights"));
    let options = CpuOptions {
        threads: Some(2),
        simd: Some(simd),
        ..CpuOptions::default()
    };
    let mut engine = CpuEngine::new(mine.clone(), options).expect("engine");
    engine.set_split(Box::new(InProcessSplit {
        simd,
        addresses: split::matrix_addresses(&mine),
        outputs: split::split_outputs(&mine.config),
        others: (1..parts).map(|p| party(pkg, p, parts).1).collect(),
        x: Mutex::new(Vec::new()),
    }));
    engine
}

#[test]
fn a_party_reads_from_the_shard_bytes_what_read_shard_gives() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs16");
    let fx = Fixture::from_dir(&dir).expect("fixture");
    for scheme in [Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let pkg = package(&quantize_weights(
            &fx.weights,
            SchemePlan::for_format(scheme),
        ));
        assert!(shards(&pkg).count() > 3, "{scheme:?}: several shards");
        for (file, bytes) in shards(&pkg) {
            let whole = read_shard(&pkg.manifest, file, bytes).expect("read_shard");
            let part =
                read_shard_part(&pkg.manifest, file, &bytes[..], |_| Keep::Whole).expect("part");
            assert_eq!(part, whole, "{scheme:?} {file}");
        }
        // Each party's slices are the rows of the whole matrices it owns.
        let cfg = pkg.manifest.model_config().expect("config");
        let (full, _) = party(&pkg, 0, 1);
        let full = full.expect("weights");
        let mut whole: Vec<&Matrix> = full
            .layers
            .iter()
            .flat_map(|l| l.matrices().map(|(_, m)| m))
            .collect();
        whole.push(&full.lm_head);
        for part in 0..3 {
            let (_, slices) = party(&pkg, part, 3);
            for (i, (start, m)) in slices.iter().enumerate() {
                let r = split::part_range(split::split_outputs(&cfg)[i], part, 3);
                assert_eq!(*start, r.start);
                assert_eq!(
                    *m,
                    slice_rows(whole[i], r.start, r.end),
                    "{scheme:?} matrix {i} part {part}"
                );
            }
        }
        // A corrupt header is an error, not a panic.
        let (file, bytes) = shards(&pkg).next().expect("a shard");
        let mut bad = bytes.clone();
        bad[0] = 0xff;
        assert!(read_shard_part(&pkg.manifest, file, &bad[..], |_| Keep::Whole).is_err());
    }
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
        .map(|i| {
            (0..b)
                .map(|j| ((i * 31 + j * 7) % (v - 2)) as u32)
                .collect()
        })
        .collect();
    let mut block: Vec<u32> = (0..b).map(|j| (j * 13 % (v - 2)) as u32).collect();
    block[5] = cfg.mask_id();
    for scheme in [Scheme::F32, Scheme::Q8, Scheme::Q4] {
        let weights = quantize_weights(&fx.weights, SchemePlan::for_format(scheme));
        let pkg = package(&weights);
        for simd in Simd::available() {
            let options = CpuOptions {
                simd: Some(simd),
                ..CpuOptions::default()
            };
            let mut one = CpuEngine::new(weights.clone(), options).expect("engine");
            let expected = logits(&mut one, &prefix, &block);
            for parts in [2, 3, split::max_parts(&cfg)] {
                let mut split = split_engine(&pkg, parts, simd);
                let got = logits(&mut split, &prefix, &block);
                let same = got
                    .iter()
                    .zip(&expected)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same && got.len() == expected.len(),
                    "{scheme:?} {} on {parts} parties: logits differ",
                    simd.name()
                );
            }
        }
    }
}
