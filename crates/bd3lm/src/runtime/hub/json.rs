//! The Hub's JSON answers: `/api/models/{repo}/revision/{rev}` (model info) and
//! `/api/models/{repo}/tree/{rev}` (the file list). Untrusted text: every field we use is
//! checked (commit and SHA-256 formats, sizes as integers, plain relative paths).

use super::{is_commit, is_sha256, HubError};
use serde_json::Value;

/// What `/api/models/{repo}/revision/{rev}` says about a repo.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The commit the revision resolves to (40 hex digits).
    pub sha: String,
    /// File names in the repo (`siblings[].rfilename`).
    pub siblings: Vec<String>,
    pub private: bool,
    /// `false`, or the gating mode (`"auto"`, `"manual"`).
    pub gated: bool,
}

/// A file's Git LFS pointer: the content's SHA-256 and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LfsInfo {
    pub oid: String,
    pub size: u64,
}

/// One entry of `/api/models/{repo}/tree/{rev}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// `file` or `directory`.
    pub kind: String,
    pub path: String,
    /// Bytes of the file's content (for LFS files, the real content, not the pointer).
    pub size: u64,
    /// Git blob id.
    pub oid: String,
    pub lfs: Option<LfsInfo>,
}

impl TreeEntry {
    pub fn is_file(&self) -> bool {
        self.kind == "file"
    }

    /// The SHA-256 of the content, for LFS files.
    pub fn sha256(&self) -> Option<&str> {
        self.lfs.as_ref().map(|l| l.oid.as_str())
    }
}

fn bad(url: &str, why: impl Into<String>) -> HubError {
    HubError::BadResponse {
        url: url.to_string(),
        why: why.into(),
    }
}

fn parse_json(url: &str, text: &str) -> Result<Value, HubError> {
    serde_json::from_str(text).map_err(|e| bad(url, format!("not JSON: {e}")))
}

/// Parses a model-info answer (`url` names it in errors).
pub fn parse_model_info(url: &str, text: &str) -> Result<ModelInfo, HubError> {
    let value = parse_json(url, text)?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad(url, "not a JSON object"))?;
    let sha = obj
        .get("sha")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(url, "no `sha` (the commit)"))?;
    if !is_commit(sha) {
        return Err(bad(url, format!("`sha` {sha:?} is not a 40-digit commit")));
    }
    let siblings = match obj.get("siblings") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.get("rfilename")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| bad(url, "a sibling without `rfilename`"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(bad(url, "`siblings` is not a list")),
    };
    let gated = match obj.get("gated") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(_) => true,
    };
    Ok(ModelInfo {
        sha: sha.to_string(),
        siblings,
        private: obj.get("private").and_then(Value::as_bool).unwrap_or(false),
        gated,
    })
}

fn plain_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// Parses a tree answer: a JSON list of files and directories.
pub fn parse_tree(url: &str, text: &str) -> Result<Vec<TreeEntry>, HubError> {
    let value = parse_json(url, text)?;
    let items = value
        .as_array()
        .ok_or_else(|| bad(url, "not a JSON list"))?;
    let mut out = Vec::with_capacity(items.len().min(10_000));
    for item in items {
        let field = |name: &str| item.get(name);
        let text = |name: &str| -> Result<String, HubError> {
            field(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(url, format!("an entry without a string `{name}`")))
        };
        let path = text("path")?;
        if !plain_path(&path) {
            return Err(bad(
                url,
                format!("path {path:?} is not a plain relative path"),
            ));
        }
        let kind = text("type")?;
        let size = match field("size") {
            None if kind == "directory" => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(url, format!("{path}: `size` is not a byte count")))?,
            None => return Err(bad(url, format!("{path}: no `size`"))),
        };
        let oid = field("oid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let lfs = match field("lfs") {
            None | Some(Value::Null) => None,
            Some(lfs) => {
                let oid = lfs
                    .get("oid")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(url, format!("{path}: `lfs` without `oid`")))?;
                // The Hub lists the SHA-256 bare; a pointer file writes it `sha256:<hex>`.
                let oid = oid.strip_prefix("sha256:").unwrap_or(oid);
                if !is_sha256(oid) {
                    return Err(bad(
                        url,
                        format!("{path}: `lfs.oid` {oid:?} is not a SHA-256"),
                    ));
                }
                let lfs_size = lfs
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| bad(url, format!("{path}: `lfs.size` is not a byte count")))?;
                if lfs_size != size {
                    return Err(bad(
                        url,
                        format!("{path}: `size` {size} and `lfs.size` {lfs_size} disagree"),
                    ));
                }
                Some(LfsInfo {
                    oid: oid.to_string(),
                    size: lfs_size,
                })
            }
        };
        out.push(TreeEntry {
            kind,
            path,
            size,
            oid,
            lfs,
        });
    }
    Ok(out)
}
