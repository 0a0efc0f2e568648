//! Model packages: what `bd3lm quantize` writes and the page downloads (`docs/package-format.md`).
//!
//! A package is a directory (or URL prefix) with `manifest.json`, a tokenizer and safetensors
//! shards of at most [`MAX_SHARD_BYTES`]. Each tensor is stored under our canonical name in
//! its scheme (see [`crate::quant`]); big matrices are cut into row pieces so no shard exceeds
//! the limit and a loader can stream them into GPU buffers piece by piece.

use crate::checkpoint::{f32_from_le, parse_safetensors};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::quant::{Matrix, MatrixData, Scheme, GROUP};
use crate::weights::{LayerWeights, Weights};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub mod url;
mod write;
pub use write::{
    build_package, piece_key, shard_name, slice_rows, write_weights, PackageFiles, PackageInfo,
    PackageWriter, PieceObserver,
};

pub const FORMAT: &str = "bd3lm-package";
pub const FORMAT_VERSION: u32 = 1;
/// Largest shard a package may have (64 MB, decimal).
pub const MAX_SHARD_BYTES: usize = 64_000_000;
/// Shard size the converters write (`bd3lm quantize`, the CLI's Hub path, the page): half the
/// limit, so a browser converting a checkpoint holds at most a 32 MB shard and 16 MB pieces
/// (peak memory, docs/models.md).
pub const CONVERTER_SHARD_BYTES: usize = 32_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A contiguous range of rows of a tensor stored in one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    pub file: String,
    pub start_row: usize,
    pub rows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub scheme: Scheme,
    pub pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub bos: u32,
    pub eos: u32,
    pub mask: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub name: String,
    /// The package's headline format (`f32`, `f16`, `q8`, `q4`).
    pub quantization: String,
    pub config: serde_json::Value,
    pub special_tokens: SpecialTokens,
    pub tokenizer: FileEntry,
    pub files: Vec<FileEntry>,
    pub tensors: Vec<TensorEntry>,
    /// Parameters stored (adaLN weights folded into constants).
    pub parameters: usize,
    /// Bytes of all files, manifest excluded.
    pub download_bytes: u64,
    /// GPU memory: weights as stored plus the f32 KV cache of a full context.
    pub gpu_bytes: u64,
    #[serde(default)]
    pub source: serde_json::Value,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The largest `manifest.json` accepted. Real ones are tens of KB (the demo's is 12 KB); parsing
/// holds up to ~11 times the text when its free-form `source` or `config` is large (measured in
/// docs/reliability.md), so this also caps what a hostile manifest can make a loader allocate.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(Error::package(
                "manifest.json",
                format!(
                    "is {} bytes; the largest accepted is {MAX_MANIFEST_BYTES}",
                    text.len()
                ),
            ));
        }
        /// The two fields read before the rest (everything else is skipped unallocated).
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(default)]
            format: serde_json::Value,
            #[serde(default)]
            format_version: serde_json::Value,
        }
        let envelope: Envelope = serde_json::from_str(text)
            .map_err(|e| Error::package("manifest.json", format!("not valid JSON: {e}")))?;
        let version = envelope.format_version.as_u64();
        if envelope.format.as_str() != Some(FORMAT) {
            return Err(Error::package(
                "manifest.json",
                format!("not a {FORMAT} manifest (field `format`)"),
            ));
        }
        match version {
            Some(v) if v > FORMAT_VERSION as u64 => {
                return Err(Error::UnsupportedPackageVersion {
                    found: v,
                    supported: FORMAT_VERSION,
                })
            }
            Some(_) => {}
            None => return Err(Error::package("manifest.json", "missing `format_version`")),
        }
        // Straight into the typed manifest: no intermediate `Value` of the whole file.
        let manifest: Manifest = serde_json::from_str(text)
            .map_err(|e| Error::package("manifest.json", format!("invalid manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The text of `manifest.json` as converters write it (pretty JSON, final newline).
    pub fn to_file_text(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map(|text| text + "\n")
            .map_err(|e| Error::package("manifest.json", format!("cannot encode: {e}")))
    }

    pub fn model_config(&self) -> Result<Config> {
        let map = self
            .config
            .as_object()
            .ok_or_else(|| Error::package("manifest.json", "`config` is not an object"))?;
        Config::from_map(map)
    }

    /// Internal consistency: every piece names a listed file, pieces cover each tensor's rows.
    pub fn validate(&self) -> Result<()> {
        let cfg = self.model_config()?;
        let bad = |m: String| Error::package("manifest.json", m);
        if self.special_tokens.mask != cfg.mask_id() {
            return Err(bad(format!(
                "special_tokens.mask {} is not vocab_size - 1",
                self.special_tokens.mask
            )));
        }
        for (what, id) in [
            ("bos", self.special_tokens.bos),
            ("eos", self.special_tokens.eos),
        ] {
            if id >= cfg.mask_id() {
                return Err(bad(format!(
                    "special_tokens.{what} {id} is not a tokenizer id (vocab_size {})",
                    cfg.vocab_size
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for f in self.files.iter().chain(std::iter::once(&self.tokenizer)) {
            // Files live side by side in the package directory (or under one URL prefix).
            let plain = !f.file.is_empty()
                && f.file != "manifest.json"
                && !f.file.starts_with('.')
                && f.file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !plain {
                return Err(bad(format!(
                    "file name `{}` is not a plain file name inside the package",
                    f.file
                )));
            }
            if !names.insert(f.file.as_str()) {
                return Err(bad(format!("file `{}` is listed twice", f.file)));
            }
            if f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "file `{}`: sha256 is not 64 hex digits",
                    f.file
                )));
            }
        }
        let total = self
            .download_order()
            .try_fold(0u64, |sum, f| sum.checked_add(f.bytes));
        if total != Some(self.download_bytes) {
            return Err(bad(format!(
                "download_bytes {} is not the sum of the file sizes ({})",
                self.download_bytes,
                total.map_or("more than 2^64".to_string(), |t| t.to_string())
            )));
        }
        // Maps, not scans: a manifest with many files and tensors must not take quadratic time.
        let shard_names: std::collections::HashSet<&str> =
            self.files.iter().map(|f| f.file.as_str()).collect();
        let mut tensors = std::collections::HashMap::new();
        for t in &self.tensors {
            if tensors.insert(t.name.as_str(), t).is_some() {
                return Err(bad(format!("tensor `{}` is listed twice", t.name)));
            }
            let fits = match t.shape.as_slice() {
                [_] => t.scheme == Scheme::F32,
                [_, cols] => t.scheme.supports_cols(*cols),
                _ => false,
            };
            if !fits {
                return Err(bad(format!(
                    "tensor `{}`: scheme {} does not fit shape {:?}",
                    t.name,
                    t.scheme.name(),
                    t.shape
                )));
            }
        }
        for t in &self.tensors {
            let rows = t.shape.first().copied().unwrap_or(1);
            let mut next = 0usize;
            for p in &t.pieces {
                if !shard_names.contains(p.file.as_str()) {
                    return Err(bad(format!(
                        "tensor `{}` is in `{}`, which is not listed in `files`",
                        t.name, p.file
                    )));
                }
                if p.start_row != next {
                    return Err(bad(format!(
                        "tensor `{}`: pieces do not cover rows contiguously",
                        t.name
                    )));
                }
                next = next
                    .checked_add(p.rows)
                    .ok_or_else(|| bad(format!("tensor `{}`: piece rows overflow", t.name)))?;
            }
            if next != rows {
                return Err(bad(format!(
                    "tensor `{}`: pieces cover {next} of {rows} rows",
                    t.name
                )));
            }
        }
        for (name, shape) in package_tensors(&cfg) {
            match tensors.get(name.as_str()) {
                None => return Err(bad(format!("tensor `{name}` is missing"))),
                Some(t) if t.shape != shape => {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        t.shape
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Every file of the package in the order the page downloads them: the tokenizer (small,
    /// needed first), then the shards in manifest order.
    pub fn download_order(&self) -> impl Iterator<Item = &FileEntry> {
        std::iter::once(&self.tokenizer).chain(&self.files)
    }

    /// Files to download (tokenizer included, manifest excluded).
    pub fn file_count(&self) -> usize {
        self.files.len() + 1
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        if self.tokenizer.file == name {
            return Some(&self.tokenizer);
        }
        self.files.iter().find(|f| f.file == name)
    }
}

/// Checks a downloaded file against its manifest entry (size, then SHA-256).
pub fn verify_file(entry: &FileEntry, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != entry.bytes {
        return Err(Error::SizeMismatch {
            file: entry.file.clone(),
            expected: entry.bytes,
            found: bytes.len() as u64,
        });
    }
    let found = sha256_hex(bytes);
    if found != entry.sha256 {
        return Err(Error::HashMismatch {
            file: entry.file.clone(),
            expected: entry.sha256.clone(),
            found,
        });
    }
    Ok(())
}

/// Canonical tensor names and shapes of a model.
pub fn expected_tensors(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    package_tensors(cfg).collect()
}

/// [`expected_tensors`] one at a time (validation walks it without holding the list).
pub fn package_tensors(cfg: &Config) -> impl Iterator<Item = (String, Vec<usize>)> {
    let (v, h) = (cfg.vocab_size, cfg.hidden_dim);
    let head = [
        ("cond".to_string(), vec![cfg.cond_dim]),
        ("rotary.inv_freq".into(), vec![cfg.head_dim() / 2]),
        ("embedding".into(), vec![v, h]),
    ];
    let layers = (0..cfg.n_layers).flat_map(move |l| {
        [
            (format!("layers.{l}.norm1"), vec![h]),
            (format!("layers.{l}.qkv"), vec![3 * h, h]),
            (format!("layers.{l}.attn_out"), vec![h, h]),
            (format!("layers.{l}.norm2"), vec![h]),
            (format!("layers.{l}.mlp_in.weight"), vec![4 * h, h]),
            (format!("layers.{l}.mlp_in.bias"), vec![4 * h]),
            (format!("layers.{l}.mlp_out.weight"), vec![h, 4 * h]),
            (format!("layers.{l}.mlp_out.bias"), vec![h]),
            (format!("layers.{l}.modulation"), vec![6 * h]),
        ]
    });
    let tail = [
        ("final.norm".to_string(), vec![h]),
        ("final.modulation".into(), vec![2 * h]),
        ("lm_head.weight".into(), vec![v, h]),
        ("lm_head.bias".into(), vec![v]),
    ];
    head.into_iter().chain(layers).chain(tail)
}

/// A loaded tensor or a row range of one.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorPiece {
    Vector(Vec<f32>),
    /// Rows `start_row .. start_row + matrix.rows` of a `[total_rows, matrix.cols]` matrix.
    Rows {
        start_row: usize,
        total_rows: usize,
        matrix: Matrix,
    },
}

/// Every tensor piece stored in one (already verified) shard.
pub fn read_shard(
    manifest: &Manifest,
    file: &str,
    bytes: &[u8],
) -> Result<Vec<(String, TensorPiece)>> {
    let st = parse_safetensors(file, bytes)?;
    let mut out = Vec::new();
    for t in &manifest.tensors {
        for p in t.pieces.iter().filter(|p| p.file == file) {
            let key = piece_key(&t.name, p.start_row);
            let get = |suffix: &str, dtype: Dtype, shape: &[usize]| -> Result<&[u8]> {
                let name = format!("{key}{suffix}");
                let view = st.tensor(&name).map_err(|_| Error::MissingTensor {
                    file: file.to_string(),
                    name: name.clone(),
                })?;
                if view.dtype() != dtype {
                    return Err(Error::TensorDtype {
                        file: file.into(),
                        name,
                        expected: format!("{dtype:?}"),
                        found: format!("{:?}", view.dtype()),
                    });
                }
                if view.shape() != shape {
                    return Err(Error::TensorShape {
                        file: file.into(),
                        name,
                        expected: shape.to_vec(),
                        found: view.shape().to_vec(),
                    });
                }
                Ok(view.data())
            };
            if t.shape.len() == 1 {
                out.push((
                    t.name.clone(),
                    TensorPiece::Vector(f32_from_le(get("", Dtype::F32, &t.shape)?)),
                ));
                continue;
            }
            let (rows, cols) = (p.rows, t.shape[1]);
            let data = match t.scheme {
                Scheme::F32 => MatrixData::F32(f32_from_le(get("", Dtype::F32, &[rows, cols])?)),
                Scheme::F16 => MatrixData::F16(u16_from_le(get("", Dtype::F16, &[rows, cols])?)),
                Scheme::Q8 => MatrixData::Q8 {
                    q: get(".q", Dtype::I8, &[rows, cols])?
                        .iter()
                        .map(|&b| b as i8)
                        .collect(),
                    scales: u16_from_le(get(".scale", Dtype::F16, &[rows, cols / GROUP])?),
                },
                Scheme::Q4 => MatrixData::Q4 {
                    q: get(".q", Dtype::U8, &[rows, cols / 2])?.to_vec(),
                    scales: u16_from_le(get(".scale", Dtype::F16, &[rows, cols / GROUP])?),
                    mins: u16_from_le(get(".min", Dtype::F16, &[rows, cols / GROUP])?),
                },
            };
            let matrix = Matrix { rows, cols, data };
            out.push((
                t.name.clone(),
                TensorPiece::Rows {
                    start_row: p.start_row,
                    total_rows: t.shape[0],
                    matrix,
                },
            ));
        }
    }
    Ok(out)
}

fn u16_from_le(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Collects tensor pieces into [`Weights`] (the CPU path; the GPU engine uploads pieces
/// directly instead).
pub struct WeightsBuilder {
    config: Config,
    vectors: BTreeMap<String, Vec<f32>>,
    matrices: BTreeMap<String, Vec<(usize, Matrix)>>,
}

impl WeightsBuilder {
    pub fn new(config: Config) -> Self {
        WeightsBuilder {
            config,
            vectors: BTreeMap::new(),
            matrices: BTreeMap::new(),
        }
    }

    pub fn put(&mut self, name: String, piece: TensorPiece) {
        match piece {
            TensorPiece::Vector(v) => {
                self.vectors.insert(name, v);
            }
            TensorPiece::Rows {
                start_row, matrix, ..
            } => self
                .matrices
                .entry(name)
                .or_default()
                .push((start_row, matrix)),
        }
    }

    fn vector(&mut self, name: &str) -> Result<Vec<f32>> {
        self.vectors.remove(name).ok_or_else(|| {
            Error::package("manifest.json", format!("tensor `{name}` was not loaded"))
        })
    }

    fn matrix(&mut self, name: &str) -> Result<Matrix> {
        let mut pieces = self.matrices.remove(name).ok_or_else(|| {
            Error::package("manifest.json", format!("tensor `{name}` was not loaded"))
        })?;
        pieces.sort_by_key(|(start, _)| *start);
        let mut iter = pieces.into_iter().map(|(_, m)| m);
        let mut whole = iter.next().ok_or_else(|| {
            Error::package("manifest.json", format!("tensor `{name}` has no rows"))
        })?;
        for next in iter {
            whole = concat_rows(whole, next)?;
        }
        Ok(whole)
    }

    pub fn finish(mut self) -> Result<Weights> {
        let mut layers = Vec::with_capacity(self.config.n_layers);
        for l in 0..self.config.n_layers {
            let p = format!("layers.{l}");
            layers.push(LayerWeights {
                norm1: self.vector(&format!("{p}.norm1"))?,
                qkv: self.matrix(&format!("{p}.qkv"))?,
                attn_out: self.matrix(&format!("{p}.attn_out"))?,
                norm2: self.vector(&format!("{p}.norm2"))?,
                mlp_in: self.matrix(&format!("{p}.mlp_in.weight"))?,
                mlp_in_bias: self.vector(&format!("{p}.mlp_in.bias"))?,
                mlp_out: self.matrix(&format!("{p}.mlp_out.weight"))?,
                mlp_out_bias: self.vector(&format!("{p}.mlp_out.bias"))?,
                modulation: self.vector(&format!("{p}.modulation"))?,
            });
        }
        Ok(Weights {
            cond: self.vector("cond")?,
            inv_freq: self.vector("rotary.inv_freq")?,
            embedding: self.matrix("embedding")?,
            layers,
            final_norm: self.vector("final.norm")?,
            final_modulation: self.vector("final.modulation")?,
            lm_head: self.matrix("lm_head.weight")?,
            lm_head_bias: self.vector("lm_head.bias")?,
            config: self.config,
        })
    }
}

fn concat_rows(a: Matrix, b: Matrix) -> Result<Matrix> {
    let rows = a.rows + b.rows;
    let cols = a.cols;
    let mut data = a.data;
    data.append(b.data).map_err(|_| {
        Error::package(
            "manifest.json",
            "pieces of one tensor use different schemes",
        )
    })?;
    Ok(Matrix { rows, cols, data })
}

/// Which scheme each kind of tensor gets in a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemePlan {
    pub embedding: Scheme,
    pub transformer: Scheme,
    pub lm_head: Scheme,
}

impl SchemePlan {
    /// The plan behind each package format name (chosen by measurement, docs/quantization.md).
    pub fn for_format(format: Scheme) -> SchemePlan {
        SchemePlan {
            embedding: format,
            transformer: format,
            lm_head: format,
        }
    }
}

/// Loads a whole package held in memory (verifying every file) into [`Weights`].
pub fn load_package(
    manifest_json: &str,
    mut read: impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<(Manifest, Weights, Vec<u8>)> {
    let manifest = Manifest::parse(manifest_json)?;
    let mut builder = WeightsBuilder::new(manifest.model_config()?);
    for entry in &manifest.files {
        let bytes = read(&entry.file)?;
        verify_file(entry, &bytes)?;
        for (name, piece) in read_shard(&manifest, &entry.file, &bytes)? {
            builder.put(name, piece);
        }
    }
    let tokenizer = read(&manifest.tokenizer.file)?;
    verify_file(&manifest.tokenizer, &tokenizer)?;
    Ok((manifest.clone(), builder.finish()?, tokenizer))
}

/// Re-encodes every matrix according to `plan` (rows that do not suit a scheme fall back to
/// f16, then f32), exactly as the converter does.
pub fn quantize_weights(weights: &Weights, plan: SchemePlan) -> Weights {
    quantize_weights_with(weights, plan, crate::quant::Q4Fit::Range)
}

/// [`quantize_weights`] with a choice of q4 encoder (for measurements).
pub fn quantize_weights_with(
    weights: &Weights,
    plan: SchemePlan,
    fit: crate::quant::Q4Fit,
) -> Weights {
    let encode = |m: &Matrix, scheme| crate::convert::encode_matrix_with(m, scheme, fit);
    Weights {
        embedding: encode(&weights.embedding, plan.embedding),
        lm_head: encode(&weights.lm_head, plan.lm_head),
        layers: weights
            .layers
            .iter()
            .map(|l| LayerWeights {
                qkv: encode(&l.qkv, plan.transformer),
                attn_out: encode(&l.attn_out, plan.transformer),
                mlp_in: encode(&l.mlp_in, plan.transformer),
                mlp_out: encode(&l.mlp_out, plan.transformer),
                ..l.clone()
            })
            .collect(),
        ..weights.clone()
    }
}
