use super::*;

fn id(s: &str) -> HubId {
    HubId::parse(s).expect("valid id")
}

#[test]
fn ids_parse_with_and_without_revision() {
    let plain = id("kuleshov-group/bd3lm-owt-block_size16");
    assert_eq!(plain.repo(), "kuleshov-group/bd3lm-owt-block_size16");
    assert_eq!(plain.revision(), "main");
    assert!(!plain.is_pinned());
    let pinned = id("a/b@0123456789abcdef0123456789abcdef01234567");
    assert!(pinned.is_pinned());
    assert_eq!(id("a/b.c_d@refs/pr/1").revision(), "refs/pr/1");
    assert_eq!(id("a/b@v1.0").to_string(), "a/b@v1.0");
}

#[test]
fn bad_ids_say_why() {
    for (input, why) in [
        ("model", "no `/`"),
        ("/name", "empty"),
        ("owner/", "empty"),
        ("a/b/c", "contains `/`"),
        ("a/b@", "empty revision"),
        ("a/b c", "contains ` `"),
        ("a/--b", "`--`"),
        ("a/.b", "starts or ends"),
        ("../etc", "`..`"),
        ("a/b@../x", "not a branch"),
        ("a/b@x y", "contains ` `"),
    ] {
        let err = HubId::parse(input).expect_err(input).to_string();
        assert!(err.contains(why), "{input}: {err}");
        assert!(err.contains("owner/name"), "{err}");
    }
    let long = format!("a/{}", "x".repeat(97));
    assert!(HubId::parse(&long).is_err());
}

#[test]
fn urls_follow_the_hub_layout() {
    let e = "http://127.0.0.1:9/";
    assert_eq!(
        resolve_url(e, "o/n", "refs/pr/1", "model.safetensors"),
        "http://127.0.0.1:9/o/n/resolve/refs%2Fpr%2F1/model.safetensors"
    );
    assert_eq!(
        model_info_url("", "o/n", "main"),
        "https://huggingface.co/api/models/o/n/revision/main"
    );
    assert_eq!(
        tree_url(e, "o/n", "main"),
        "http://127.0.0.1:9/api/models/o/n/tree/main"
    );
}

#[test]
fn statuses_become_the_right_errors() {
    let i = id("o/n@dev");
    let err = |status, code, file| status_error(status, code, &i, "http://h", file, "u", false);
    assert!(matches!(
        err(404, Some("RepoNotFound"), None),
        HubError::RepoNotFound { .. }
    ));
    assert!(err(404, None, None).to_string().contains("was not found"));
    assert!(matches!(
        err(404, Some("RevisionNotFound"), None),
        HubError::RevisionNotFound { .. }
    ));
    assert!(matches!(
        err(404, Some("EntryNotFound"), Some("config.json")),
        HubError::FileNotFound { .. }
    ));
    let unauthorized = err(401, None, None).to_string();
    assert!(unauthorized.contains("private or gated"), "{unauthorized}");
    assert!(unauthorized.contains("HF_TOKEN"), "{unauthorized}");
    let with_token = status_error(403, None, &i, "h", None, "u", true).to_string();
    assert!(with_token.contains("gated"), "{with_token}");
    assert!(with_token.contains("does not give access"), "{with_token}");
    assert!(matches!(
        err(500, None, None),
        HubError::Http { status: 500, .. }
    ));
}

const SHA: &str = "9f2b1d6a3c5e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn tree_json(lfs_size: u64) -> String {
    format!(
        r#"[{{"type":"file","oid":"abc","size":680,"path":"config.json"}},
            {{"type":"directory","oid":"d","path":"sub"}},
            {{"type":"file","oid":"def","size":1000,"path":"model.safetensors",
              "lfs":{{"oid":"{SHA}","size":{lfs_size},"pointerSize":134}}}}]"#
    )
}

#[test]
fn tree_and_info_parse_and_plan_a_load() {
    let tree = parse_tree("u", &tree_json(1000)).expect("valid tree");
    assert_eq!(tree.len(), 3);
    let plan = LoadPlan::from_tree(&id("o/n"), &tree).expect("plan");
    assert_eq!(plan.checkpoint.sha256(), Some(SHA));
    assert_eq!(plan.download_bytes(), 1680);
    assert!(plan.tokenizer.is_none());
    let info = parse_model_info(
        "u",
        &format!(r#"{{"id":"o/n","sha":"{COMMIT}","siblings":[{{"rfilename":"config.json"}}],"gated":"manual"}}"#),
    )
    .expect("valid info");
    assert_eq!(info.sha, COMMIT);
    assert_eq!(info.siblings, vec!["config.json".to_string()]);
    assert!(info.gated && !info.private);
}

#[test]
fn malformed_answers_are_errors_not_panics() {
    for text in [
        "",
        "{",
        "{}",
        "[1]",
        r#"[{"type":"file","path":"../x","size":1}]"#,
        r#"[{"type":"file","path":"/abs","size":1}]"#,
        r#"[{"type":"file","path":"a","size":-1}]"#,
        r#"[{"type":"file","path":"a","size":1,"lfs":{"oid":"zz","size":1}}]"#,
        r#"[{"type":"file","path":"a","size":1,"lfs":{"size":1}}]"#,
    ] {
        assert!(parse_tree("u", text).is_err(), "{text}");
    }
    // lfs.size must agree with size.
    assert!(parse_tree("u", &tree_json(999)).is_err());
    for text in [
        "[]",
        r#"{"sha":"xyz"}"#,
        r#"{"sha":5}"#,
        r#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":{}}"#,
    ] {
        assert!(parse_model_info("u", text).is_err(), "{text}");
    }
    // A checkpoint without LFS has no SHA-256 to check: refused.
    let tree = parse_tree(
        "u",
        r#"[{"type":"file","path":"config.json","size":1},{"type":"file","path":"model.safetensors","size":5}]"#,
    )
    .expect("parses");
    assert!(matches!(
        LoadPlan::from_tree(&id("o/n"), &tree),
        Err(HubError::NotLfs { .. })
    ));
    let tree =
        parse_tree("u", r#"[{"type":"file","path":"config.json","size":1}]"#).expect("parses");
    let err = LoadPlan::from_tree(&id("o/n"), &tree)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn configs_that_are_not_bd3lm_are_named() {
    let i = id("openai-community/gpt2");
    let gpt2 = r#"{"model_type":"gpt2","vocab_size":50257,"n_layer":12}"#;
    let err = check_config(&i, gpt2).unwrap_err().to_string();
    assert!(err.contains("is not a BD3-LM model"), "{err}");
    assert!(err.contains("\"gpt2\""), "{err}");
    assert!(check_config(&i, "{}")
        .unwrap_err()
        .to_string()
        .contains("no model_type"));
    assert!(check_config(&i, "not json").is_err());
    let bad_shape = r#"{"model_type":"bd3lm","hidden_dim":100,"n_heads":3}"#;
    assert!(check_config(&i, bad_shape).is_err());
    let ok = check_config(&i, r#"{"model_type":"bd3lm","block_size":4}"#).expect("bd3lm");
    assert!(uses_gpt2_tokenizer(&ok));
}

#[test]
fn package_estimate_matches_the_released_q8_size() {
    // docs/web.md: the released shapes as q8 are a 174.5 MB package (GPT-2 tokenizer included).
    let cfg = Config::released(16);
    let est = package_bytes_estimate(&cfg, SchemePlan::for_format(Scheme::Q8), 1_355_256);
    assert!((174_000_000..175_500_000).contains(&est), "{est}");
}

#[test]
fn a_package_listing_must_match_its_manifest() {
    let tree = parse_tree(
        "u",
        &format!(
            r#"[{{"type":"file","oid":"m","size":900,"path":"manifest.json"}},
                {{"type":"file","oid":"t","size":50,"path":"tokenizer.json"}},
                {{"type":"file","oid":"w","size":1000,"path":"weights-00000.safetensors",
                  "lfs":{{"oid":"{SHA}","size":1000,"pointerSize":134}}}}]"#
        ),
    )
    .expect("valid tree");
    assert!(holds_package(&tree));
    assert!(!holds_package(&parse_tree("u", &tree_json(1000)).unwrap()));
    let o = id("o/pkg");
    let good = [
        ("tokenizer.json", 50, "aa"),
        ("weights-00000.safetensors", 1000, SHA),
    ];
    check_package_listing(&o, &tree, good).expect("matches");
    let other_sha = "0".repeat(64);
    let err = check_package_listing(
        &o,
        &tree,
        [("weights-00000.safetensors", 1000, other_sha.as_str())],
    )
    .unwrap_err();
    assert!(matches!(err, HubError::PackageListing { .. }), "{err}");
    assert!(
        err.to_string().contains("manifest.json says SHA-256 0000"),
        "{err}"
    );
    let err = check_package_listing(&o, &tree, [("tokenizer.json", 51, "aa")]).unwrap_err();
    assert!(err.to_string().contains("51 bytes"), "{err}");
    for missing in [
        "weights-00001.safetensors",
        "../manifest.json",
        "sub/tokenizer.json",
    ] {
        let err = check_package_listing(&o, &tree, [(missing, 1, "aa")]).unwrap_err();
        assert!(
            matches!(err, HubError::FileNotFound { .. }),
            "{missing}: {err}"
        );
    }
}
