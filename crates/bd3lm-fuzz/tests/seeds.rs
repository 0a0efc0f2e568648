//! The crafted seeds are valid inputs, so fuzzing starts from inputs that reach the deep
//! code (a seed the parser rejects at once would teach the fuzzer little).

use bd3lm::package::{read_shard, Manifest};
use bd3lm_fuzz::input::{split, text};
use bd3lm_fuzz::seeds_dir;

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = seeds_dir(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn tiny_checkpoints_load() {
    for name in ["tiny", "wide"] {
        let data = seed("hf_checkpoint", name);
        let (config, model) = split(&data);
        bd3lm::checkpoint::load_hf(text(config).expect("utf-8"), model).expect(name);
    }
}

#[test]
fn package_seeds_parse_and_every_shard_reads() {
    for name in ["f32-0", "f16-0", "q8-0", "q4-0", "q4-1"] {
        let data = seed("package_shard", name);
        let (manifest, shard) = split(&data);
        let manifest = Manifest::parse(text(manifest).expect("utf-8")).expect(name);
        let pieces = manifest
            .files
            .iter()
            .filter_map(|f| read_shard(&manifest, &f.file, shard).ok())
            .map(|p| p.len())
            .max();
        assert!(
            pieces.unwrap_or(0) > 0,
            "{name}: no shard of the manifest reads"
        );
    }
    for name in ["f32.json", "q8.json", "demo-q8.json"] {
        let data = seed("package_manifest", name);
        Manifest::parse(text(&data).expect("utf-8")).expect(name);
    }
}

#[test]
fn tokenizer_seeds_load() {
    for name in [
        "demo-bpe-cut.json",
        "wordlevel.json",
        "wordpiece.json",
        "unigram.json",
        "split-regex.json",
    ] {
        let data = seed("tokenizer_json", name);
        let err = bd3lm::tokenizer::Tokenizer::from_bytes(&data, 3).err();
        let found = match err {
            Some(bd3lm::Error::TokenizerVocab { found, .. }) => found,
            None => 2,
            Some(other) => panic!("{name}: {other}"),
        };
        let tok = bd3lm::tokenizer::Tokenizer::from_bytes(&data, found + 1).expect(name);
        assert!(
            !tok.encode("hello world ab").expect(name).is_empty(),
            "{name}"
        );
    }
}

#[test]
fn config_and_golden_seeds_parse() {
    for name in [
        "tiny.json",
        "demo.json",
        "tiny-v512-bs4.json",
        "defaults.json",
    ] {
        bd3lm::Config::from_json_str(text(&seed("config_json", name)).expect("utf-8")).expect(name);
    }
    let data = seed("fixture_golden", "tiny");
    let (golden, notes) = split(&data);
    assert_eq!(
        bd3lm::fixture::read_golden(golden).expect("golden").len(),
        3
    );
    assert!(!bd3lm::fixture::read_notes(text(notes).expect("utf-8"))
        .expect("notes")
        .is_empty());
}
