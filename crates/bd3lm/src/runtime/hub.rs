//! Models by Hugging Face Hub id (`owner/name[@revision]`): parsing ids, the Hub's URLs, its
//! JSON answers (model info, file tree) and its error statuses, and the plan of a load (which
//! files, their sizes and SHA-256, the size of the package they become). Pure functions of
//! untrusted text, no network: the CLI (ureq + hf-hub) and the page (fetch) do the I/O and
//! share these parsers and messages. The Hub's behaviour is summarised in `docs/models.md`.

use crate::config::Config;
use crate::package::SchemePlan;
use crate::quant::Scheme;
use thiserror::Error;

mod json;
pub use json::{parse_model_info, parse_tree, LfsInfo, ModelInfo, TreeEntry};

/// The public Hub (`HF_ENDPOINT` natively, `?hub=` in the page, select another).
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The paper's released checkpoints (f32, GPT-2 vocabulary, no tokenizer in the repo).
pub const RELEASED_MODELS: [&str; 3] = [
    "kuleshov-group/bd3lm-owt-block_size4",
    "kuleshov-group/bd3lm-owt-block_size8",
    "kuleshov-group/bd3lm-owt-block_size16",
];
pub const CONFIG_FILE: &str = "config.json";
pub const CHECKPOINT_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Revision used when an id names none.
pub const DEFAULT_REVISION: &str = "main";
/// GPT-2's vocabulary plus the MASK token: the released models' `vocab_size`.
pub const GPT2_VOCAB_SIZE: usize = 50258;
/// Longest repo name part the Hub accepts.
const MAX_NAME: usize = 96;

/// Everything that can go wrong loading a model by Hub id, each in words that say what to do.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum HubError {
    #[error("`{input}` is not a Hugging Face model id ({why}); ids look like owner/name or owner/name@revision")]
    BadId { input: String, why: String },
    #[error(
        "model {repo} was not found on the Hub at {endpoint} (HTTP 404): check the id's spelling"
    )]
    RepoNotFound { repo: String, endpoint: String },
    #[error("model {repo} has no revision `{revision}` (HTTP 404): use a branch, a tag or a commit of the repo")]
    RevisionNotFound { repo: String, revision: String },
    #[error("model {repo}@{revision} has no file {file} (HTTP 404): it is not a BD3-LM checkpoint in the Hugging Face layout (config.json + model.safetensors)")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
    },
    #[error("model {repo} needs a login (HTTP {status}): it is private or gated, or does not exist. {hint}")]
    Unauthorized {
        repo: String,
        status: u16,
        hint: String,
    },
    #[error("model {repo} refuses this token (HTTP 403): it is gated (accept its terms on the model page while logged in) or private to others. {hint}")]
    Forbidden { repo: String, hint: String },
    #[error("the Hub answered HTTP {status} for {url}; try again later")]
    Http { url: String, status: u16 },
    #[error("the Hub at {url} could not be reached ({detail}): the network is down, the address is wrong, or (in a browser) the server does not allow this page (CORS)")]
    Unreachable { url: String, detail: String },
    #[error("the Hub's answer from {url} is not what the Hub sends ({why})")]
    BadResponse { url: String, why: String },
    #[error("{repo}@{revision} is not a BD3-LM model: {why}")]
    NotBd3lm {
        repo: String,
        revision: String,
        why: String,
    },
    #[error("{repo}: {file} is not stored with Git LFS, so the Hub gives no SHA-256 to verify it against")]
    NotLfs { repo: String, file: String },
    #[error("{file} from {repo} is corrupt: its SHA-256 is {found}, the Hub lists {expected}. The bytes were discarded; try again (if it repeats, a proxy or mirror is serving damaged data)")]
    HashMismatch {
        repo: String,
        file: String,
        expected: String,
        found: String,
    },
    #[error("{repo}: the Hub lists {file} with {listed}, but the package's manifest.json says {manifest}: the file was changed after the manifest was written. Publish manifest.json and the files it lists together (bd3lm quantize writes them)")]
    PackageListing {
        repo: String,
        file: String,
        listed: String,
        manifest: String,
    },
    #[error("{file} from {repo} has {found} bytes, the Hub lists {expected}. The bytes were discarded; try again")]
    SizeMismatch {
        repo: String,
        file: String,
        expected: u64,
        found: u64,
    },
    #[error("the download of {file} from {repo} broke off at byte {at} of {total} ({detail}) and could not be resumed; nothing was stored, try again")]
    Interrupted {
        repo: String,
        file: String,
        at: u64,
        total: u64,
        detail: String,
    },
    #[error("offline (HF_HUB_OFFLINE=1) and {what} is not in the cache; run once with the network to download it")]
    Offline { what: String },
}

/// A model id: `owner/name` and an optional `@revision` (branch, tag or commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    pub owner: String,
    pub name: String,
    pub revision: Option<String>,
}

fn valid_part(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("an empty owner or name".into());
    }
    if part.len() > MAX_NAME {
        return Err(format!("`{part}` is longer than {MAX_NAME} characters"));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("`{part}` contains `{c}`"));
    }
    if part.contains("--") || part.contains("..") {
        return Err(format!("`{part}` contains `--` or `..`"));
    }
    if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
        return Err(format!("`{part}` starts or ends with `-` or `.`"));
    }
    Ok(())
}

fn valid_revision(rev: &str) -> Result<(), String> {
    if rev.is_empty() {
        return Err("an empty revision after `@`".into());
    }
    if rev.len() > 255 {
        return Err("a revision longer than 255 characters".into());
    }
    if let Some(c) = rev
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!("revision `{rev}` contains `{c}`"));
    }
    if rev.contains("..") || rev.starts_with('/') || rev.ends_with('/') || rev.contains("//") {
        return Err(format!("revision `{rev}` is not a branch, tag or commit"));
    }
    Ok(())
}

impl HubId {
    /// Parses `owner/name` or `owner/name@revision`.
    pub fn parse(input: &str) -> Result<HubId, HubError> {
        let bad = |why: String| HubError::BadId {
            input: input.to_string(),
            why,
        };
        let (repo, revision) = match input.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (input, None),
        };
        let Some((owner, name)) = repo.split_once('/') else {
            return Err(bad("no `/` between owner and name".into()));
        };
        valid_part(owner).map_err(bad)?;
        valid_part(name).map_err(bad)?;
        if let Some(rev) = revision {
            valid_revision(rev).map_err(bad)?;
        }
        Ok(HubId {
            owner: owner.to_string(),
            name: name.to_string(),
            revision: revision.map(str::to_string),
        })
    }

    /// `owner/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The revision asked for (`main` when none).
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    /// Whether the revision is already a full commit hash (no lookup needed to pin it).
    pub fn is_pinned(&self) -> bool {
        self.revision.as_deref().is_some_and(is_commit)
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.revision {
            Some(rev) => write!(f, "{}/{}@{rev}", self.owner, self.name),
            None => write!(f, "{}/{}", self.owner, self.name),
        }
    }
}

/// A 40-digit lowercase hex git commit.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A 64-digit lowercase hex SHA-256.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The endpoint without trailing slashes (`https://huggingface.co` when empty).
pub fn normalize_endpoint(endpoint: &str) -> String {
    // Slashes and spaces in any mix at the end: normalizing twice changes nothing.
    let trimmed = endpoint
        .trim_start()
        .trim_end_matches(|c: char| c == '/' || c.is_whitespace());
    if trimmed.is_empty() {
        DEFAULT_ENDPOINT.to_string()
    } else {
        trimmed.to_string()
    }
}

/// A revision as one URL path segment (`refs/pr/1` → `refs%2Fpr%2F1`, as the Hub expects).
pub fn encode_revision(rev: &str) -> String {
    rev.replace('/', "%2F")
}

/// `GET {endpoint}/{repo}/resolve/{revision}/{file}`: the file (LFS files redirect to a CDN).
pub fn resolve_url(endpoint: &str, repo: &str, revision: &str, file: &str) -> String {
    format!(
        "{}/{repo}/resolve/{}/{file}",
        normalize_endpoint(endpoint),
        encode_revision(revision)
    )
}

/// `GET {endpoint}/api/models/{repo}/revision/{revision}`: the commit (`sha`) and file names.
pub fn model_info_url(endpoint: &str, repo: &str, revision: &str) -> String {
    format!(
        "{}/api/models/{repo}/revision/{}",
        normalize_endpoint(endpoint),
        encode_revision(revision)
    )
}

/// `GET {endpoint}/api/models/{repo}/tree/{revision}`: every file with size and LFS SHA-256.
pub fn tree_url(endpoint: &str, repo: &str, revision: &str) -> String {
    format!(
        "{}/api/models/{repo}/tree/{}",
        normalize_endpoint(endpoint),
        encode_revision(revision)
    )
}

/// The error for a non-success HTTP status of the Hub. `error_code` is the `X-Error-Code`
/// header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`) when visible;
/// `file` is the file requested (`None` for API calls); `had_token` whether a token was sent.
pub fn status_error(
    status: u16,
    error_code: Option<&str>,
    id: &HubId,
    endpoint: &str,
    file: Option<&str>,
    url: &str,
    had_token: bool,
) -> HubError {
    let repo = id.repo();
    let token_hint = if had_token {
        "The token that was sent (HF_TOKEN) does not give access to it.".to_string()
    } else {
        "Set HF_TOKEN to a token of an account with access (natively); the page can only load public models.".to_string()
    };
    match (status, error_code) {
        (404, Some("RevisionNotFound")) => HubError::RevisionNotFound {
            repo,
            revision: id.revision().to_string(),
        },
        (404, Some("EntryNotFound")) | (404, None) if file.is_some() => HubError::FileNotFound {
            repo,
            revision: id.revision().to_string(),
            file: file.unwrap_or_default().to_string(),
        },
        (404, _) => HubError::RepoNotFound {
            repo,
            endpoint: normalize_endpoint(endpoint),
        },
        (401, _) => HubError::Unauthorized {
            repo,
            status,
            hint: token_hint,
        },
        (403, _) => HubError::Forbidden {
            repo,
            hint: token_hint,
        },
        _ => HubError::Http {
            url: url.to_string(),
            status,
        },
    }
}

/// What loading a model by id involves, from the Hub's file list: which files, how many bytes
/// come over the network, and how big the package they become is.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub config: TreeEntry,
    pub checkpoint: TreeEntry,
    /// The repo's own tokenizer, when it ships one.
    pub tokenizer: Option<TreeEntry>,
}

impl LoadPlan {
    /// Finds the files of a BD3-LM checkpoint in the repo's tree.
    pub fn from_tree(id: &HubId, tree: &[TreeEntry]) -> Result<LoadPlan, HubError> {
        let find = |name: &str| tree.iter().find(|e| e.path == name && e.is_file()).cloned();
        let missing = |file: &str| HubError::FileNotFound {
            repo: id.repo(),
            revision: id.revision().to_string(),
            file: file.to_string(),
        };
        let config = find(CONFIG_FILE).ok_or_else(|| missing(CONFIG_FILE))?;
        let checkpoint = find(CHECKPOINT_FILE).ok_or_else(|| missing(CHECKPOINT_FILE))?;
        if checkpoint.lfs.is_none() {
            return Err(HubError::NotLfs {
                repo: id.repo(),
                file: CHECKPOINT_FILE.into(),
            });
        }
        Ok(LoadPlan {
            config,
            checkpoint,
            tokenizer: find(TOKENIZER_FILE),
        })
    }

    /// The checkpoint's SHA-256 and size as the Hub lists them.
    pub fn checkpoint_lfs(&self) -> Option<&LfsInfo> {
        self.checkpoint.lfs.as_ref()
    }

    /// Bytes a load downloads (config, checkpoint, tokenizer when the repo has one).
    pub fn download_bytes(&self) -> u64 {
        self.config.size + self.checkpoint.size + self.tokenizer.as_ref().map_or(0, |t| t.size)
    }
}

/// The package file name of a repo that holds a package (`bd3lm quantize`'s output published
/// as is): its presence at the top level makes the repo a package repo.
pub const PACKAGE_MANIFEST_FILE: &str = "manifest.json";

/// Whether the repo's file list holds a package (a `manifest.json` at the top level).
pub fn holds_package(tree: &[TreeEntry]) -> bool {
    tree.iter()
        .any(|e| e.path == PACKAGE_MANIFEST_FILE && e.is_file())
}

/// Checks the Hub's listing of every file a package's manifest names, before any of them is
/// downloaded: present, a plain file name, the manifest's size and, for a Git LFS file, the
/// manifest's SHA-256 as its `lfs.oid`. `files` are the manifest's (name, bytes, sha256).
pub fn check_package_listing<'a>(
    id: &HubId,
    tree: &[TreeEntry],
    files: impl IntoIterator<Item = (&'a str, u64, &'a str)>,
) -> Result<(), HubError> {
    for (name, bytes, sha256) in files {
        let plain = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
        let listed = tree
            .iter()
            .find(|e| plain && e.path == name && e.is_file())
            .ok_or_else(|| HubError::FileNotFound {
                repo: id.repo(),
                revision: id.revision().to_string(),
                file: name.to_string(),
            })?;
        let mismatch = |listed: String, manifest: String| HubError::PackageListing {
            repo: id.repo(),
            file: name.to_string(),
            listed,
            manifest,
        };
        if listed.size != bytes {
            return Err(mismatch(
                format!("{} bytes", listed.size),
                format!("{bytes} bytes"),
            ));
        }
        if let Some(lfs) = &listed.lfs {
            if lfs.oid != sha256 {
                return Err(mismatch(
                    format!("SHA-256 {}", lfs.oid),
                    format!("SHA-256 {sha256}"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a downloaded `config.json` is a BD3-LM config this build can run.
pub fn check_config(id: &HubId, text: &str) -> Result<Config, HubError> {
    let not = |why: String| HubError::NotBd3lm {
        repo: id.repo(),
        revision: id.revision().to_string(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| not(format!("config.json is not JSON ({e})")))?;
    let map = value
        .as_object()
        .ok_or_else(|| not("config.json is not a JSON object".into()))?;
    // The class defaults would make any config a BD3-LM one: the field must say so.
    match map.get("model_type").and_then(|v| v.as_str()) {
        Some("bd3lm") => {}
        Some(other) => {
            return Err(not(format!(
                "its config.json has model_type \"{other}\", not \"bd3lm\""
            )))
        }
        None => return Err(not("its config.json has no model_type".into())),
    }
    Config::from_map(map).map_err(|e| not(e.to_string()))
}

/// Whether a model uses GPT-2's tokenizer (plus MASK), like the released checkpoints: then a
/// repo without `tokenizer.json` gets the GPT-2 tokenizer this build ships.
pub fn uses_gpt2_tokenizer(cfg: &Config) -> bool {
    cfg.vocab_size == GPT2_VOCAB_SIZE
}

/// Bytes of the package a conversion with `plan` writes: weights as stored, the tokenizer and
/// the shards' headers (an estimate within a few kB; the manifest has the exact figure).
pub fn package_bytes_estimate(cfg: &Config, plan: SchemePlan, tokenizer_bytes: u64) -> u64 {
    let mut bytes = tokenizer_bytes;
    let mut tensors = 0u64;
    for (name, shape) in crate::package::expected_tensors(cfg) {
        tensors += 1;
        bytes += match shape.as_slice() {
            [rows, cols] => {
                let wanted = plan.scheme_for(crate::convert::matrix_role(&name));
                let scheme = [wanted, Scheme::F16, Scheme::F32]
                    .into_iter()
                    .find(|s| s.supports_cols(*cols))
                    .unwrap_or(Scheme::F32);
                scheme.bytes(*rows, *cols) as u64
            }
            [n] => 4 * *n as u64,
            _ => 0,
        };
    }
    // About 100 bytes of safetensors header per stored tensor (q8/q4 store 2-3 each).
    bytes + tensors * 200
}

#[cfg(test)]
mod tests;
