#![cfg(not(target_arch = "wasm32"))]
//! The streaming converter (HF checkpoint → package while its bytes arrive): the package does
//! not depend on how the bytes were chunked (so the page, fed by `fetch`, writes what
//! `bd3lm quantize` writes), it loads to the same weights whatever the file's tensor order,
//! and f16/bf16 checkpoints load through every loader.

use bd3lm::checkpoint;
use bd3lm::convert::hf_to_weights;
use bd3lm::hf_file::HfFile;
use bd3lm::package::{self, Manifest, PackageWriter, SchemePlan, SpecialTokens};
use bd3lm::quant::Scheme;
use bd3lm::stream_convert::{package_info, StreamingConverter};
use bd3lm::{Config, Weights};
use safetensors::{Dtype, SafeTensors};

mod common;
use common::fixture_dir;

fn fixture(case: &str) -> (String, Vec<u8>) {
    let dir = fixture_dir(case);
    (
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
}

type Files = Vec<(String, Vec<u8>)>;

/// Converts `bytes` pushed in chunks of the given sizes (cycled), shards of `shard` bytes.
fn convert(
    cfg: &Config,
    bytes: &[u8],
    chunks: &[usize],
    plan: SchemePlan,
    shard: usize,
) -> bd3lm::Result<(Manifest, Files)> {
    let mut files = Vec::new();
    let writer = PackageWriter::new(shard, |name: &str, b: Vec<u8>| {
        files.push((name.to_string(), b));
        Ok(())
    });
    let mut converter =
        StreamingConverter::new(cfg, plan, "model.safetensors", bytes.len() as u64, writer);
    let mut at = 0;
    for &size in chunks.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size.max(1)).min(bytes.len());
        converter.push(&bytes[at..end])?;
        at = end;
    }
    let special = SpecialTokens {
        bos: cfg.mask_id() - 1,
        eos: cfg.mask_id() - 1,
        mask: cfg.mask_id(),
    };
    let info = package_info(cfg, plan, "t", special, bytes.len() as u64);
    let manifest = converter.finish(info, b"{\"tokenizer\": true}")?;
    Ok((manifest, files))
}

fn load(manifest: &Manifest, files: &Files) -> Weights {
    let text = manifest.to_file_text().unwrap();
    package::load_package(&text, |f| {
        Ok(files
            .iter()
            .find(|(n, _)| n == f)
            .map(|(_, b)| b.clone())
            .unwrap())
    })
    .unwrap()
    .1
}

#[test]
fn chunking_never_changes_the_package() {
    for case in ["gpt2vocab-bs8", "tiny-v512-bs16"] {
        let (config, bytes) = fixture(case);
        let cfg = Config::from_json_str(&config).unwrap();
        for format in [Scheme::Q8, Scheme::Q4, Scheme::F16] {
            let plan = SchemePlan::for_format(format);
            // Small shards, so tensors are cut into pieces across several shards.
            let shard = (bytes.len() / 20).max(50_000);
            let (whole, whole_files) = convert(&cfg, &bytes, &[bytes.len()], plan, shard).unwrap();
            assert!(whole.files.len() >= 2, "{case}: several shards");
            for chunks in [&[1 << 20][..], &[4099, 17, 65_537, 3], &[1_000_003]] {
                let (m, f) = convert(&cfg, &bytes, chunks, plan, shard).unwrap();
                assert_eq!(m, whole, "{case} {format:?} {chunks:?}: manifest");
                assert_eq!(f, whole_files, "{case} {format:?} {chunks:?}: files");
            }
            let expected =
                package::quantize_weights(&checkpoint::load_hf(&config, &bytes).unwrap(), plan);
            assert_eq!(load(&whole, &whole_files), expected, "{case} {format:?}");
        }
    }
}

/// A rewritten tensor: name, shape, bytes in the new dtype, bytes of the rounded f32 values.
type Stored = (String, Vec<usize>, Vec<u8>, Vec<u8>);

/// Rewrites a checkpoint with tensors in the order `order` sorts their names by and dtype `dtype` (values
/// rounded through it), returning the bytes and the f32 checkpoint of the rounded values.
fn rewrite(bytes: &[u8], dtype: Dtype, order: impl Fn(&str) -> String) -> (Vec<u8>, Vec<u8>) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), checkpoint::f32_from_le(v.data())))
        .collect();
    tensors.sort_by_key(|(n, ..)| order(n));
    let encode = |x: f32| -> Vec<u8> {
        match dtype {
            Dtype::F16 => half::f16::from_f32(x).to_le_bytes().to_vec(),
            Dtype::BF16 => half::bf16::from_f32(x).to_le_bytes().to_vec(),
            _ => x.to_le_bytes().to_vec(),
        }
    };
    let rounded = |x: f32| -> f32 {
        match dtype {
            Dtype::F16 => half::f16::from_f32(x).to_f32(),
            Dtype::BF16 => half::bf16::from_f32(x).to_f32(),
            _ => x,
        }
    };
    let stored: Vec<Stored> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|&x| encode(x)).collect(),
                v.iter().flat_map(|&x| rounded(x).to_le_bytes()).collect(),
            )
        })
        .collect();
    // safetensors sorts by dtype then name: write the data in the asked order by hand.
    let file = |data: &dyn Fn(&Stored) -> &Vec<u8>, dt: Dtype| {
        let mut header = String::from("{");
        let mut offset = 0;
        for (i, t) in stored.iter().enumerate() {
            let len = data(t).len();
            header.push_str(&format!(
                "{}\"{}\":{{\"dtype\":\"{dt:?}\",\"shape\":{:?},\"data_offsets\":[{offset},{}]}}",
                if i > 0 { "," } else { "" },
                t.0,
                t.1,
                offset + len
            ));
            offset += len;
        }
        header.push('}');
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        for t in &stored {
            out.extend(data(t));
        }
        out
    };
    let views_check = |b: &[u8]| SafeTensors::deserialize(b).map(|_| ()).unwrap();
    let half = file(&|t| &t.2, dtype);
    let full = file(&|t| &t.3, Dtype::F32);
    views_check(&half);
    views_check(&full);
    (half, full)
}

#[test]
fn half_precision_checkpoints_load_through_every_loader() {
    let (config, bytes) = fixture("tiny-v512-bs4");
    let cfg = Config::from_json_str(&config).unwrap();
    for dtype in [Dtype::F16, Dtype::BF16] {
        let (half, rounded_f32) = rewrite(&bytes, dtype, |n| n.to_string());
        let expected = checkpoint::load_hf(&config, &rounded_f32).unwrap();
        // In memory.
        assert_eq!(
            checkpoint::load_hf(&config, &half).unwrap(),
            expected,
            "{dtype:?}"
        );
        // From a file, tensor by tensor.
        let path = std::env::temp_dir().join(format!(
            "bd3lm-half-{dtype:?}-{}.safetensors",
            std::process::id()
        ));
        std::fs::write(&path, &half).unwrap();
        let mut file = HfFile::open(&path).unwrap();
        file.check(&cfg).unwrap();
        let weights = hf_to_weights(&cfg, |n, s| file.read_f32(n, s), |_| {}).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(weights, expected, "{dtype:?}");
        // Streaming (the page and `bd3lm quantize`).
        let plan = SchemePlan::for_format(Scheme::F32);
        let (m, f) = convert(&cfg, &half, &[12_345], plan, 64_000_000).unwrap();
        let (m32, f32_files) = convert(&cfg, &rounded_f32, &[12_345], plan, 64_000_000).unwrap();
        assert_eq!(load(&m, &f), load(&m32, &f32_files), "{dtype:?}");
        assert_eq!(load(&m, &f), expected, "{dtype:?}");
    }
}

#[test]
fn any_tensor_order_gives_the_same_weights() {
    let (config, bytes) = fixture("tiny-v512-bs16");
    let cfg = Config::from_json_str(&config).unwrap();
    let plan = SchemePlan::for_format(Scheme::Q8);
    let expected = package::quantize_weights(&checkpoint::load_hf(&config, &bytes).unwrap(), plan);
    // The timestep MLP first (modulations computed at once), or last (they wait for it).
    for order in [
        |n: &str| format!("{}{n}", if n.contains("sigma_map") { "0" } else { "1" }),
        |n: &str| format!("{}{n}", if n.contains("sigma_map") { "1" } else { "0" }),
        |n: &str| n.chars().rev().collect::<String>(),
    ] {
        let (reordered, _) = rewrite(&bytes, Dtype::F32, order);
        let (m, f) = convert(&cfg, &reordered, &[777], plan, 300_000).unwrap();
        assert_eq!(load(&m, &f), expected);
    }
}

#[test]
fn bad_streams_are_errors() {
    let (config, bytes) = fixture("tiny-v512-bs4");
    let cfg = Config::from_json_str(&config).unwrap();
    let plan = SchemePlan::for_format(Scheme::Q8);
    // Truncated: the stream ends early.
    let err = convert(&cfg, &bytes[..bytes.len() - 100], &[4096], plan, 64_000_000)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    // A config of another shape: the header check names the tensor before any work.
    let other = Config::from_json_str(r#"{"hidden_dim": 64, "n_heads": 2, "vocab_size": 512, "n_blocks": 1, "cond_dim": 32, "model_length": 64, "block_size": 4}"#).unwrap();
    let err = convert(&other, &bytes, &[4096], plan, 64_000_000)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("tensor"), "{err}");
    // Garbage.
    let junk = vec![0xffu8; 1000];
    assert!(convert(&cfg, &junk, &[10], plan, 64_000_000).is_err());
}

#[test]
fn observed_pieces_build_the_packaged_weights() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let (config, bytes) = fixture("gpt2vocab-bs8");
    let cfg = Config::from_json_str(&config).unwrap();
    let plan = SchemePlan::for_format(Scheme::Q8);
    let builder = Rc::new(RefCell::new(package::WeightsBuilder::new(cfg.clone())));
    let mut files = Vec::new();
    let mut writer = PackageWriter::new(1_000_000, |name: &str, b: Vec<u8>| {
        files.push((name.to_string(), b));
        Ok(())
    });
    let seen = builder.clone();
    writer.observe_pieces(Box::new(move |name, piece| {
        seen.borrow_mut().put(name.to_string(), piece);
        Ok(())
    }));
    let mut converter =
        StreamingConverter::new(&cfg, plan, "model.safetensors", bytes.len() as u64, writer);
    for chunk in bytes.chunks(100_000) {
        converter.push(chunk).unwrap();
    }
    let special = SpecialTokens {
        bos: 50256,
        eos: 50256,
        mask: 50257,
    };
    let manifest = converter
        .finish(
            package_info(&cfg, plan, "t", special, bytes.len() as u64),
            b"{}",
        )
        .unwrap();
    let observed = Rc::try_unwrap(builder)
        .ok()
        .unwrap()
        .into_inner()
        .finish()
        .unwrap();
    assert_eq!(observed, load(&manifest, &files));
}
