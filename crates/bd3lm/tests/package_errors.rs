#![cfg(not(target_arch = "wasm32"))]
//! Loading a damaged package fails with a precise error naming the file (issue 5).

use bd3lm::checkpoint;
use bd3lm::package::{self, PackageFiles, SchemePlan, SpecialTokens};
use bd3lm::quant::Scheme;
use bd3lm::Error;
use std::path::PathBuf;

fn small_package() -> PackageFiles {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs4");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let weights = checkpoint::load_hf(
        &config,
        &std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
    .unwrap();
    let q = package::quantize_weights(&weights, SchemePlan::for_format(Scheme::Q8));
    let special = SpecialTokens {
        bos: 510,
        eos: 510,
        mask: 511,
    };
    package::build_package(
        "t",
        "q8",
        &q,
        b"{\"tok\":1}",
        special,
        serde_json::Value::Null,
        60_000,
    )
    .unwrap()
}

fn load(manifest: &str, files: &[(String, Vec<u8>)]) -> bd3lm::Result<()> {
    package::load_package(manifest, |f| {
        files
            .iter()
            .find(|(n, _)| n == f)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| Error::io(f, "not found"))
    })
    .map(|_| ())
}

fn manifest_value(pkg: &PackageFiles) -> serde_json::Value {
    serde_json::to_value(&pkg.manifest).unwrap()
}

#[test]
fn intact_package_loads() {
    let pkg = small_package();
    assert!(
        pkg.manifest.files.len() >= 2,
        "the test needs several shards"
    );
    load(&serde_json::to_string(&pkg.manifest).unwrap(), &pkg.files).unwrap();
}

#[test]
fn flipped_byte_is_a_hash_mismatch_naming_the_shard() {
    let mut pkg = small_package();
    let (name, bytes) = &mut pkg.files[1];
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let name = name.clone();
    let err = load(&serde_json::to_string(&pkg.manifest).unwrap(), &pkg.files).unwrap_err();
    assert!(
        matches!(&err, Error::HashMismatch { file, .. } if *file == name),
        "{err}"
    );
    assert!(
        err.to_string().contains(&name) && err.to_string().contains("SHA-256"),
        "{err}"
    );
}

#[test]
fn truncated_shard_is_a_size_mismatch_naming_the_shard() {
    let mut pkg = small_package();
    let (name, bytes) = &mut pkg.files[0];
    let full = bytes.len() as u64;
    bytes.truncate(bytes.len() / 2);
    let name = name.clone();
    let err = load(&serde_json::to_string(&pkg.manifest).unwrap(), &pkg.files).unwrap_err();
    match &err {
        Error::SizeMismatch {
            file,
            expected,
            found,
        } => {
            assert_eq!((file, *expected, *found), (&name, full, full / 2));
        }
        other => panic!("expected a size mismatch, got {other}"),
    }
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn corrupt_tokenizer_is_detected() {
    let mut pkg = small_package();
    let tok = pkg
        .files
        .iter_mut()
        .find(|(n, _)| n == "tokenizer.json")
        .unwrap();
    tok.1[0] = b'[';
    let err = load(&serde_json::to_string(&pkg.manifest).unwrap(), &pkg.files).unwrap_err();
    assert!(
        matches!(&err, Error::HashMismatch { file, .. } if file == "tokenizer.json"),
        "{err}"
    );
}

#[test]
fn newer_format_version_is_refused() {
    let pkg = small_package();
    let mut m = manifest_value(&pkg);
    m["format_version"] = 2.into();
    let err = load(&m.to_string(), &pkg.files).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedPackageVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("manifest") && err.to_string().contains("update bd3lm"),
        "{err}"
    );
}

/// Each inconsistency is reported against manifest.json with what is wrong.
#[test]
fn inconsistent_manifests_are_refused() {
    let pkg = small_package();
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 8] = [
        (
            "unlisted piece file",
            |m| m["tensors"][2]["pieces"][0]["file"] = "weights-00099.safetensors".into(),
            "not listed",
        ),
        (
            "rows not covered",
            |m| m["tensors"][2]["pieces"][0]["rows"] = 7.into(),
            "rows",
        ),
        (
            "missing tensor",
            |m| {
                m["tensors"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|t| t["name"] != "lm_head.bias");
            },
            "lm_head.bias",
        ),
        (
            "wrong shape",
            |m| m["tensors"][2]["shape"] = serde_json::json!([512, 63]),
            "shape",
        ),
        (
            "path in file name",
            |m| m["files"][0]["file"] = "../evil.safetensors".into(),
            "plain file name",
        ),
        (
            "download bytes",
            |m| m["download_bytes"] = 12.into(),
            "download_bytes",
        ),
        (
            "mask id",
            |m| m["special_tokens"]["mask"] = 7.into(),
            "special_tokens.mask",
        ),
        (
            "bad config",
            |m| m["config"]["n_heads"] = 5.into(),
            "n_heads",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut m = manifest_value(&pkg);
        edit(&mut m);
        let err = load(&m.to_string(), &pkg.files).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(needle), "{what}: {text}");
        assert!(
            text.contains("manifest.json") || text.contains("config.json"),
            "{what}: {text}"
        );
    }
}

#[test]
fn shard_missing_a_tensor_names_file_and_tensor() {
    // A shard that hashes fine but does not hold what the manifest says: re-list the tensor in
    // a different (listed) shard.
    let pkg = small_package();
    let mut m = manifest_value(&pkg);
    let tensors = m["tensors"].as_array_mut().unwrap();
    let t = tensors
        .iter_mut()
        .find(|t| t["pieces"][0]["file"] == "weights-00000.safetensors" && t["name"] == "cond")
        .unwrap();
    t["pieces"][0]["file"] = "weights-00001.safetensors".into();
    let err = load(&m.to_string(), &pkg.files).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { file, name } if file == "weights-00001.safetensors" && name == "cond"),
        "{err}"
    );
}
