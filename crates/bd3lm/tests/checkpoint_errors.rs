#![cfg(not(target_arch = "wasm32"))]
//! HF checkpoints: every fixture's `model.safetensors` holds exactly the tensors of spec §3
//! with the shapes its `config.json` implies, and each kind of damage (truncated file, missing
//! tensor, wrong shape, wrong dtype, bad JSON) is its own typed error naming what is wrong.

use bd3lm::checkpoint::{self, hf_tensor_specs};
use bd3lm::{Config, Error};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;

mod common;
use common::{fixture_dir, fixtures_root};

fn fixture_files(case: &str) -> (String, Vec<u8>) {
    let dir = fixture_dir(case);
    (
        std::fs::read_to_string(dir.join("config.json")).expect("config.json"),
        std::fs::read(dir.join("model.safetensors")).expect("model.safetensors"),
    )
}

/// Rewrites a checkpoint, letting `edit` change each tensor as `(dtype, shape, bytes)` or drop
/// it (`None`).
fn rewrite(
    bytes: &[u8],
    edit: impl Fn(&str, Dtype, Vec<usize>, Vec<u8>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).expect("fixture parses");
    let mut kept: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let edited = edit(
            &name,
            view.dtype(),
            view.shape().to_vec(),
            view.data().to_vec(),
        );
        if let Some(t) = edited {
            kept.insert(name, t);
        }
    }
    let views: Vec<(String, TensorView)> = kept
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    safetensors::serialize(views, None).expect("serialize")
}

#[test]
fn every_fixture_checkpoint_has_exactly_the_spec_tensors() {
    let dirs = bd3lm::fixture::case_dirs(&fixtures_root()).expect("fixture cases");
    assert!(dirs.len() >= 3, "the three shared cases");
    for dir in dirs {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let (config, bytes) = fixture_files(&case);
        let cfg = Config::from_json_str(&config).expect("config parses");
        let st = SafeTensors::deserialize(&bytes).expect("safetensors parses");
        let mut found: Vec<(String, Vec<usize>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                assert_eq!(v.dtype(), Dtype::F32, "{case}: {n} is f32");
                (n, v.shape().to_vec())
            })
            .collect();
        let mut expected = hf_tensor_specs(&cfg);
        found.sort();
        expected.sort();
        assert_eq!(found, expected, "{case}: tensor names and shapes (spec §3)");
        checkpoint::load_hf(&config, &bytes).expect("loads");
    }
}

#[test]
fn truncated_checkpoint_is_a_safetensors_error() {
    let (config, bytes) = fixture_files("tiny-v512-bs4");
    for len in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = checkpoint::load_hf(&config, &bytes[..len]).expect_err("fails");
        assert!(
            matches!(&err, Error::Safetensors { file, .. } if file == "model.safetensors"),
            "{len} bytes: {err}"
        );
    }
    let err = checkpoint::load_hf(&config, &bytes[..bytes.len() / 2]).expect_err("fails");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let (config, bytes) = fixture_files("tiny-v512-bs4");
    let victim = hf_tensor_specs(&Config::from_json_str(&config).unwrap())[3]
        .0
        .clone();
    let damaged = rewrite(&bytes, |n, d, s, b| (n != victim).then_some((d, s, b)));
    let err = checkpoint::load_hf(&config, &damaged).expect_err("fails");
    assert!(
        matches!(&err, Error::MissingTensor { name, .. } if *name == victim),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let (config, bytes) = fixture_files("tiny-v512-bs4");
    let (victim, shape) = hf_tensor_specs(&Config::from_json_str(&config).unwrap())
        .into_iter()
        .find(|(_, s)| s.len() == 2 && s[0] > 1)
        .expect("a matrix");
    let damaged = rewrite(&bytes, |n, d, s, b| {
        if n == victim {
            // Drop the last row: a consistent file with the wrong shape.
            let row = b.len() / s[0];
            Some((d, vec![s[0] - 1, s[1]], b[..b.len() - row].to_vec()))
        } else {
            Some((d, s, b))
        }
    });
    let err = checkpoint::load_hf(&config, &damaged).expect_err("fails");
    match &err {
        Error::TensorShape {
            name,
            found,
            expected,
            ..
        } => {
            assert_eq!(name, &victim);
            assert_eq!(expected, &shape);
            assert_eq!(found, &vec![shape[0] - 1, shape[1]]);
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn wrong_dtype_is_named() {
    let (config, bytes) = fixture_files("tiny-v512-bs4");
    let victim = hf_tensor_specs(&Config::from_json_str(&config).unwrap())[0]
        .0
        .clone();
    let damaged = rewrite(&bytes, |n, d, s, b| {
        if n == victim {
            let wide: Vec<u8> = b
                .chunks_exact(4)
                .flat_map(|c| (f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).to_le_bytes())
                .collect();
            Some((Dtype::F64, s, wide))
        } else {
            Some((d, s, b))
        }
    });
    let err = checkpoint::load_hf(&config, &damaged).expect_err("fails");
    assert!(
        matches!(&err, Error::TensorDtype { name, .. } if *name == victim),
        "{err}"
    );
}

#[test]
fn bad_config_json_is_a_config_error() {
    let (_, bytes) = fixture_files("tiny-v512-bs4");
    for bad in ["", "{not json", "[1, 2]", r#"{"block_size": "four"}"#] {
        let err = checkpoint::load_hf(bad, &bytes).expect_err("fails");
        assert!(matches!(err, Error::Config { .. }), "{bad:?}: {err}");
    }
    // A valid config that does not describe this file: the first mismatching tensor is named.
    let err = checkpoint::load_hf(r#"{"hidden_dim": 96}"#, &bytes).expect_err("fails");
    assert!(
        matches!(err, Error::TensorShape { .. } | Error::MissingTensor { .. }),
        "{err}"
    );
}
