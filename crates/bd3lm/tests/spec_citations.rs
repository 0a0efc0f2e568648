#![cfg(not(target_arch = "wasm32"))] // walks the repository on the file system
//! Every "spec §N" cited in the repository names a section that exists in `docs/spec.md`.
//!
//! The walk covers `crates/`, `shaders/`, `tests/` (fixture READMEs and `tests/e2e` included),
//! `scripts/`, `web/`, `models/` (the demo model's README cites the spec too), `README.md` and
//! `docs/`, reading files with a source or documentation extension (`TEXT_EXTENSIONS`). It
//! skips `target/`, `node_modules/`, `dist/` and hidden directories, `docs/spec.md` (checked on
//! its own below), `docs/platform.md` (whose `§N` are its own sections) and this file (whose
//! strings are test data).
//!
//! The rule, exact for this repository: every `§` must be followed by a section number
//! (`N`, `N.M`, ...), and each reference belongs to the document named nearest before it on
//! its line, `spec` (as a word, any case) or `platform.md`; when neither precedes it, to the
//! first one after it on the line. So `spec §4.5, §9` cites spec §4.5 and §9, `(§7.3 of the
//! spec)` cites spec §7.3, and `platform.md §1` cites platform.md. A `§` on a line naming
//! neither document is an error (write `spec §N`), so no citation can escape the check. A
//! spec citation must match a heading `## N. Title` (one number) or `### N.M Title` (two,
//! one more `#` per further level) in `docs/spec.md`; a platform citation the same form in
//! `docs/platform.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const ROOTS: &[&str] = &[
    "crates",
    "shaders",
    "tests",
    "scripts",
    "web",
    "models",
    "docs",
    "README.md",
];
const SKIP_DIRS: &[&str] = &["target", "node_modules", "dist", "out"];
const SKIP_FILES: &[&str] = &[
    "docs/spec.md",
    "docs/platform.md",
    "crates/bd3lm/tests/spec_citations.rs",
];
const TEXT_EXTENSIONS: &[&str] = &[
    "rs", "wgsl", "md", "sh", "py", "mjs", "js", "ts", "html", "css", "toml", "yml", "yaml",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doc {
    Spec,
    Platform,
}

/// One `§` reference: `section` is `None` when the `§` is not followed by a number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    doc: Option<Doc>,
    section: Option<String>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Line number (1-based) of the heading of `section` ("4", "4.2", ...) in `doc`: `## 4. ...`
/// for a top-level section, `### 4.2 ...` for a subsection, one more `#` per further level.
fn section_heading(doc: &str, section: &str) -> Option<usize> {
    let depth = section.split('.').count();
    let marker = if depth == 1 {
        format!("{} {section}. ", "#".repeat(2))
    } else {
        format!("{} {section} ", "#".repeat(depth + 1))
    };
    doc.lines()
        .position(|line| line.starts_with(&marker))
        .map(|i| i + 1)
}

/// Byte offsets of the document markers on a line.
fn doc_markers(line: &str) -> Vec<(usize, Doc)> {
    let lower = line.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    for (at, _) in lower.match_indices("spec") {
        let before_ok = at == 0 || !is_word(bytes[at - 1]);
        let after_ok = at + 4 >= bytes.len() || !is_word(bytes[at + 4]);
        if before_ok && after_ok {
            out.push((at, Doc::Spec));
        }
    }
    for (at, _) in lower.match_indices("platform.md") {
        out.push((at, Doc::Platform));
    }
    out.sort_by_key(|&(at, _)| at);
    out
}

/// Every `§` reference on `line`, attributed by the rule of the module comment.
fn references(line: &str) -> Vec<Reference> {
    let markers = doc_markers(line);
    let mut out = Vec::new();
    for (at, _) in line.match_indices('§') {
        let rest = &line[at + '§'.len_utf8()..];
        let mut end = 0;
        let bytes = rest.as_bytes();
        while end < bytes.len() {
            let digit = bytes[end].is_ascii_digit();
            let inner_dot =
                bytes[end] == b'.' && end > 0 && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
            if !(digit || inner_dot) {
                break;
            }
            end += 1;
        }
        let section = (end > 0).then(|| rest[..end].to_string());
        let doc = markers
            .iter()
            .rev()
            .find(|&&(m, _)| m < at)
            .or_else(|| markers.iter().find(|&&(m, _)| m > at))
            .map(|&(_, d)| d);
        out.push(Reference { doc, section });
    }
    out
}

fn walk(path: &Path, files: &mut Vec<PathBuf>) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if path.is_dir() {
        if name.starts_with('.') || SKIP_DIRS.contains(&name) {
            return;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            walk(&entry, files);
        }
    } else if path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| TEXT_EXTENSIONS.contains(&e))
    {
        files.push(path.to_path_buf());
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn every_cited_spec_section_exists() {
    let root = repo_root();
    let spec = read(&root.join("docs/spec.md"));
    let platform = read(&root.join("docs/platform.md"));
    let mut files = Vec::new();
    for r in ROOTS {
        let path = root.join(r);
        assert!(path.exists(), "{} is missing: fix ROOTS", path.display());
        walk(&path, &mut files);
    }
    let mut spec_citations = 0usize;
    let mut sections_cited = std::collections::BTreeSet::new();
    let mut problems = String::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        if SKIP_FILES.contains(&rel.as_str()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(file) else {
            continue; // not UTF-8: not a source or doc file we can cite from
        };
        for (i, line) in text.lines().enumerate() {
            for reference in references(line) {
                let at = format!("{rel}:{}", i + 1);
                let (Some(doc), Some(section)) = (reference.doc, reference.section) else {
                    let _ = writeln!(
                        problems,
                        "{at}: `§` without a section number or a document (write `spec §N`): {}",
                        line.trim()
                    );
                    continue;
                };
                let (text, name) = match doc {
                    Doc::Spec => (&spec, "docs/spec.md"),
                    Doc::Platform => (&platform, "docs/platform.md"),
                };
                if doc == Doc::Spec {
                    spec_citations += 1;
                    sections_cited.insert(section.clone());
                }
                if section_heading(text, &section).is_none() {
                    let _ = writeln!(problems, "{at}: §{section} has no heading in {name}");
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "section references that do not resolve:\n{problems}"
    );
    assert!(
        spec_citations > 0,
        "no `spec §N` citation found in {} files: the walk is broken",
        files.len()
    );
    eprintln!(
        "{spec_citations} spec citations of {} sections in {} files, all present in docs/spec.md",
        sections_cited.len(),
        files.len()
    );
}

/// The spec's own cross-references (every `§` in it refers to itself) resolve too, and no
/// section number is used by two headings.
#[test]
fn spec_cross_references_resolve_and_headings_are_unique() {
    let spec = read(&repo_root().join("docs/spec.md"));
    let mut problems = String::new();
    let mut seen = std::collections::BTreeMap::new();
    for (i, line) in spec.lines().enumerate() {
        if let Some(rest) = line
            .strip_prefix("## ")
            .or_else(|| line.strip_prefix("### "))
        {
            let number: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.').to_string();
            if !number.is_empty() {
                if let Some(first) = seen.insert(number.clone(), i + 1) {
                    let _ = writeln!(
                        problems,
                        "docs/spec.md:{}: §{number} already at line {first}",
                        i + 1
                    );
                }
            }
        }
        for reference in references(line) {
            match reference.section {
                Some(s) if section_heading(&spec, &s).is_some() => {}
                Some(s) => {
                    let _ = writeln!(problems, "docs/spec.md:{}: §{s} has no heading", i + 1);
                }
                None => {
                    let _ = writeln!(problems, "docs/spec.md:{}: `§` without a number", i + 1);
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems}");
    assert!(
        seen.len() >= 12,
        "docs/spec.md has only {} numbered headings",
        seen.len()
    );
}

#[test]
fn heading_finder_accepts_real_sections_and_rejects_others() {
    let doc =
        "# Title\n## 1. One\n### 1.2 Sub\n## 10. Ten\n#### 10.1.3 Deep\ntext ## 2. not a heading\n";
    assert_eq!(section_heading(doc, "1"), Some(2));
    assert_eq!(section_heading(doc, "1.2"), Some(3));
    assert_eq!(section_heading(doc, "10"), Some(4));
    assert_eq!(section_heading(doc, "10.1.3"), Some(5));
    // Absent sections, prefixes of present ones, wrong depth, a heading inside a line.
    for absent in ["99.9", "3", "1.1", "1.20", "10.1", "0", "2"] {
        assert_eq!(
            section_heading(doc, absent),
            None,
            "§{absent} must not be found"
        );
    }
    assert_eq!(
        section_heading("### 4. wrong level\n## 4.2 wrong level\n", "4"),
        None
    );
    assert_eq!(
        section_heading("### 4. wrong level\n## 4.2 wrong level\n", "4.2"),
        None
    );

    // And on the real spec: what is cited exists, what is not does not.
    let spec = read(&repo_root().join("docs/spec.md"));
    for present in ["1", "4.2", "6.3", "7.3", "9.2", "12"] {
        assert!(section_heading(&spec, present).is_some(), "§{present}");
    }
    for absent in ["13", "4.9", "9.99", "0"] {
        assert_eq!(section_heading(&spec, absent), None, "§{absent}");
    }
}

#[test]
fn references_are_attributed_to_the_nearest_document() {
    let spec = |s: &str| Reference {
        doc: Some(Doc::Spec),
        section: Some(s.into()),
    };
    assert_eq!(
        references("// SUBS (spec §4.5, §9): ..."),
        [spec("4.5"), spec("9")]
    );
    assert_eq!(
        references("(spec §4–§7), see §7.3."),
        [spec("4"), spec("7"), spec("7.3")]
    );
    assert_eq!(references("see §9.2 of the Spec"), [spec("9.2")]);
    assert_eq!(
        references("platform.md §1, then spec §2"),
        [
            Reference {
                doc: Some(Doc::Platform),
                section: Some("1".into())
            },
            spec("2")
        ]
    );
    // "specific" is not the word "spec"; a bare § has no document.
    assert_eq!(
        references("a specific §3"),
        [Reference {
            doc: None,
            section: Some("3".into())
        }]
    );
    assert_eq!(
        references("spec § x"),
        [Reference {
            doc: Some(Doc::Spec),
            section: None
        }]
    );
}
