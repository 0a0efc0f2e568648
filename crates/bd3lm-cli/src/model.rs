//! Finding and loading a model: the embedded default package, a package directory
//! (`manifest.json`), a Hugging Face directory (`config.json` + `model.safetensors`), or a
//! Hugging Face Hub id (`owner/name[@revision]`, when no such path exists; see `hub.rs`).

use crate::error::{CliError, CliResult};
use crate::hub::{self, HubPackage};
use crate::quantize::FormatArg;
use bd3lm::hf_file::HfFile;
use bd3lm::hub::HubId;
use bd3lm::package::{self, Manifest};
use bd3lm::quant::Scheme;
use bd3lm::tokenizer::Tokenizer;
use bd3lm::{Config, Weights};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_model.rs"));
}

pub use embedded::{EMBEDDED_FILES, EMBEDDED_PACKAGE_DIR};

/// GPT-2's tokenizer (`models/tokenizers/gpt2/`), built in: the released checkpoints use it
/// and their repos ship none.
static GPT2_TOKENIZER_JSON: &[u8] =
    include_bytes!("../../../models/tokenizers/gpt2/tokenizer.json");

/// The built-in tokenizer for a checkpoint without `tokenizer.json`: GPT-2's, when the
/// model has GPT-2's vocabulary (plus MASK) like the released BD3-LMs.
pub fn builtin_tokenizer(cfg: &Config) -> Option<&'static [u8]> {
    bd3lm::hub::uses_gpt2_tokenizer(cfg).then_some(GPT2_TOKENIZER_JSON)
}

/// The `--format` of commands that take `--model`: what a Hub id is converted to.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct HubArgs {
    /// Package format a Hugging Face Hub id is converted to (once; the package is cached).
    #[arg(long = "format", value_enum, default_value_t = FormatArg::Q8)]
    pub format: FormatArg,
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Embedded,
    Package(PathBuf),
    HuggingFace(PathBuf),
    /// A Hub id, converted into a cached package.
    Hub(HubPackage),
}

/// A `--model` value that is no existing path but a Hub id.
fn hub_id(model: &Path) -> Option<HubId> {
    if model.exists() {
        return None;
    }
    model.to_str().and_then(|s| HubId::parse(s).ok())
}

impl ModelSource {
    /// `None` means the embedded default model; a Hub id becomes a q8 package.
    pub fn resolve(dir: Option<&Path>) -> CliResult<ModelSource> {
        Self::resolve_with(dir, Scheme::Q8, None)
    }

    /// [`ModelSource::resolve`], a Hub id converted to `format` (`tokenizer` is used when its
    /// repo ships none and GPT-2's does not fit).
    pub fn resolve_with(
        dir: Option<&Path>,
        format: Scheme,
        tokenizer: Option<&Path>,
    ) -> CliResult<ModelSource> {
        let Some(dir) = dir else {
            return Ok(ModelSource::Embedded);
        };
        if let Some(id) = hub_id(dir) {
            return hub::package_for(&id, format, tokenizer).map(ModelSource::Hub);
        }
        if !dir.exists() {
            return Err(CliError::Io {
                path: dir.display().to_string(),
                message: "no such model directory (nor a Hugging Face id owner/name[@revision])"
                    .into(),
            });
        }
        if !dir.is_dir() {
            return Err(CliError::Io {
                path: dir.display().to_string(),
                message: "not a directory (--model takes a package directory with manifest.json or a Hugging Face directory with config.json and model.safetensors)".into(),
            });
        }
        if dir.join("manifest.json").is_file() {
            return Ok(ModelSource::Package(dir.to_path_buf()));
        }
        if dir.join("config.json").is_file() && dir.join("model.safetensors").is_file() {
            return Ok(ModelSource::HuggingFace(dir.to_path_buf()));
        }
        Err(CliError::Io {
            path: dir.display().to_string(),
            message: "neither a model package (manifest.json) nor a Hugging Face checkpoint (config.json + model.safetensors)".into(),
        })
    }

    /// For commands that read the f32 checkpoint: a Hub id becomes its checkpoint in the
    /// Hub cache (downloaded as needed), anything else resolves as usual.
    pub fn resolve_checkpoint(model: &Path) -> CliResult<ModelSource> {
        match hub_id(model) {
            Some(id) => hub::checkpoint_for(&id).map(ModelSource::HuggingFace),
            None => Self::resolve(Some(model)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ModelSource::Hub(p) => format!(
                "{} (commit {}) from the Hugging Face Hub, package {}",
                p.id,
                p.commit.get(..12).unwrap_or(&p.commit),
                p.dir.display()
            ),
            ModelSource::Embedded => format!("embedded default model ({EMBEDDED_PACKAGE_DIR})"),
            ModelSource::Package(p) => format!("package {}", p.display()),
            ModelSource::HuggingFace(p) => format!("Hugging Face checkpoint {}", p.display()),
        }
    }

    /// Short name for reports (directory name).
    pub fn short_name(&self) -> String {
        let dir = match self {
            ModelSource::Embedded => {
                return EMBEDDED_PACKAGE_DIR
                    .rsplit('/')
                    .next()
                    .unwrap_or("embedded")
                    .to_string()
            }
            ModelSource::Hub(p) => return p.id.name.clone(),
            ModelSource::Package(p) | ModelSource::HuggingFace(p) => p,
        };
        dir.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| dir.display().to_string())
    }
}

/// A loaded model: weights in their stored schemes, tokenizer (when there is one) and the
/// package manifest (packages only).
pub struct LoadedModel {
    pub source: ModelSource,
    /// Shared with the fast CPU engine, which runs on them as they are.
    pub weights: Arc<Weights>,
    pub tokenizer: Option<Tokenizer>,
    /// The tokenizer file's bytes (what a package ships).
    pub tokenizer_json: Option<Vec<u8>>,
    pub manifest: Option<Manifest>,
    /// Headline format: the package's, or `f32` for an HF checkpoint.
    pub format: String,
    /// Bytes of the model files (package: all files; HF: model.safetensors).
    pub file_bytes: u64,
}

impl LoadedModel {
    pub fn config(&self) -> &Config {
        &self.weights.config
    }

    /// The tokenizer, or an error that says how to provide one.
    pub fn tokenizer(&self) -> CliResult<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            CliError::Usage(format!(
                "{} has no tokenizer.json and its vocabulary is not GPT-2's (whose tokenizer is built in); pass --tokenizer FILE",
                self.source.describe()
            ))
        })
    }
}

fn read(path: &Path) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| CliError::io(path, e))
}

/// Loads a package from a reader of its files, every file verified (size, SHA-256).
fn load_package_files(
    context: &str,
    mut read_file: impl FnMut(&str) -> bd3lm::Result<Vec<u8>>,
) -> CliResult<(Manifest, Weights, Vec<u8>)> {
    let manifest_bytes = read_file("manifest.json").map_err(|e| CliError::core(context, e))?;
    let text = String::from_utf8(manifest_bytes).map_err(|_| {
        CliError::core(
            context,
            bd3lm::Error::package("manifest.json", "not UTF-8 text"),
        )
    })?;
    package::load_package(&text, read_file).map_err(|e| CliError::core(context, e))
}

/// Loads the model (and its tokenizer: `tokenizer_override`, else the model's own).
pub fn load(source: &ModelSource, tokenizer_override: Option<&Path>) -> CliResult<LoadedModel> {
    let (weights, tokenizer_json, manifest, format, file_bytes) = match source {
        ModelSource::Embedded => {
            if EMBEDDED_FILES.is_empty() {
                return Err(CliError::Usage(format!(
                    "this build has no embedded model ({EMBEDDED_PACKAGE_DIR} was missing at compile time); pass --model DIR"
                )));
            }
            let (manifest, weights, tok) = load_package_files("embedded model", |f| {
                EMBEDDED_FILES
                    .iter()
                    .find(|(name, _)| *name == f)
                    .map(|(_, bytes)| bytes.to_vec())
                    .ok_or_else(|| bd3lm::Error::io(f, "not embedded in this build"))
            })?;
            let bytes = manifest.download_bytes;
            let format = manifest.quantization.clone();
            (weights, Some(tok), Some(manifest), format, bytes)
        }
        ModelSource::Package(dir) | ModelSource::Hub(HubPackage { dir, .. }) => {
            let context = dir.display().to_string();
            let (manifest, weights, tok) = load_package_files(&context, |f| {
                std::fs::read(dir.join(f)).map_err(|e| bd3lm::Error::io(f, e))
            })?;
            let bytes = manifest.download_bytes;
            let format = manifest.quantization.clone();
            (weights, Some(tok), Some(manifest), format, bytes)
        }
        ModelSource::HuggingFace(dir) => {
            let config_path = dir.join("config.json");
            let config_text = String::from_utf8_lossy(&read(&config_path)?).to_string();
            let config = Config::from_json_str(&config_text)
                .map_err(|e| CliError::core(dir.display().to_string(), e))?;
            let mut file = HfFile::open(&dir.join("model.safetensors"))
                .and_then(|f| f.check(&config).map(|_| f))
                .map_err(|e| CliError::core("", e))?;
            let bytes = file.len();
            let weights =
                bd3lm::convert::hf_to_weights(&config, |n, s| file.read_f32(n, s), |_| {})
                    .map_err(|e| CliError::core(dir.display().to_string(), e))?;
            let tok_path = dir.join("tokenizer.json");
            let tok = if tok_path.is_file() {
                Some(read(&tok_path)?)
            } else {
                builtin_tokenizer(&config).map(<[u8]>::to_vec)
            };
            (weights, tok, None, "f32".to_string(), bytes)
        }
    };
    let tokenizer_json = match tokenizer_override {
        Some(path) => Some(read(path)?),
        None => tokenizer_json,
    };
    let tokenizer = match &tokenizer_json {
        Some(json) => Some(
            Tokenizer::from_bytes(json, weights.config.vocab_size).map_err(|e| {
                let which = tokenizer_override
                    .map_or_else(|| source.describe(), |p| p.display().to_string());
                CliError::core(which, e)
            })?,
        ),
        None => None,
    };
    Ok(LoadedModel {
        source: source.clone(),
        weights: Arc::new(weights),
        tokenizer,
        tokenizer_json,
        manifest,
        format,
        file_bytes,
    })
}
