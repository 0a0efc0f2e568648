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
use safetensors::{Dtype, View};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;

pub const FORMAT: &str = "bd3lm-package";
pub const FORMAT_VERSION: u32 = 1;
/// Largest shard a package writes (64 MB, decimal).
pub const MAX_SHARD_BYTES: usize = 64_000_000;

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

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::package("manifest.json", format!("not valid JSON: {e}")))?;
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if value.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
            return Err(Error::package(
                "manifest.json",
                format!("not a {FORMAT} manifest (field `format`)"),
            ));
        }
        match version {
            Some(v) if v as u32 > FORMAT_VERSION => {
                return Err(Error::UnsupportedPackageVersion {
                    found: v as u32,
                    supported: FORMAT_VERSION,
                })
            }
            Some(_) => {}
            None => return Err(Error::package("manifest.json", "missing `format_version`")),
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| Error::package("manifest.json", format!("invalid manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
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
        for t in &self.tensors {
            let rows = t.shape.first().copied().unwrap_or(1);
            let mut next = 0;
            for p in &t.pieces {
                if !self.files.iter().any(|f| f.file == p.file) {
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
                next += p.rows;
            }
            if next != rows {
                return Err(bad(format!(
                    "tensor `{}`: pieces cover {next} of {rows} rows",
                    t.name
                )));
            }
        }
        for (name, shape) in expected_tensors(&cfg) {
            match self.tensors.iter().find(|t| t.name == name) {
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
    let (v, h) = (cfg.vocab_size, cfg.hidden_dim);
    let mut out = vec![
        ("cond".to_string(), vec![cfg.cond_dim]),
        ("rotary.inv_freq".into(), vec![cfg.head_dim() / 2]),
        ("embedding".into(), vec![v, h]),
    ];
    for l in 0..cfg.n_layers {
        out.extend([
            (format!("layers.{l}.norm1"), vec![h]),
            (format!("layers.{l}.qkv"), vec![3 * h, h]),
            (format!("layers.{l}.attn_out"), vec![h, h]),
            (format!("layers.{l}.norm2"), vec![h]),
            (format!("layers.{l}.mlp_in.weight"), vec![4 * h, h]),
            (format!("layers.{l}.mlp_in.bias"), vec![4 * h]),
            (format!("layers.{l}.mlp_out.weight"), vec![h, 4 * h]),
            (format!("layers.{l}.mlp_out.bias"), vec![h]),
            (format!("layers.{l}.modulation"), vec![6 * h]),
        ]);
    }
    out.extend([
        ("final.norm".to_string(), vec![h]),
        ("final.modulation".into(), vec![2 * h]),
        ("lm_head.weight".into(), vec![v, h]),
        ("lm_head.bias".into(), vec![v]),
    ]);
    out
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

fn piece_key(name: &str, start_row: usize) -> String {
    if start_row == 0 {
        name.to_string()
    } else {
        format!("{name}@{start_row}")
    }
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
    let data = match (a.data, b.data) {
        (MatrixData::F32(mut x), MatrixData::F32(y)) => {
            x.extend(y);
            MatrixData::F32(x)
        }
        (MatrixData::F16(mut x), MatrixData::F16(y)) => {
            x.extend(y);
            MatrixData::F16(x)
        }
        (MatrixData::Q8 { mut q, mut scales }, MatrixData::Q8 { q: q2, scales: s2 }) => {
            q.extend(q2);
            scales.extend(s2);
            MatrixData::Q8 { q, scales }
        }
        (
            MatrixData::Q4 {
                mut q,
                mut scales,
                mut mins,
            },
            MatrixData::Q4 {
                q: q2,
                scales: s2,
                mins: m2,
            },
        ) => {
            q.extend(q2);
            scales.extend(s2);
            mins.extend(m2);
            MatrixData::Q4 { q, scales, mins }
        }
        _ => {
            return Err(Error::package(
                "manifest.json",
                "pieces of one tensor use different schemes",
            ))
        }
    };
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

/// One tensor ready for a shard: its safetensors parts.
struct Part {
    key: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Part {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn matrix_parts(key: &str, m: &Matrix) -> Vec<Part> {
    let (r, c) = (m.rows, m.cols);
    let le16 = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let part = |suffix: &str, dtype, shape: Vec<usize>, data| Part {
        key: format!("{key}{suffix}"),
        dtype,
        shape,
        data,
    };
    match &m.data {
        MatrixData::F32(v) => vec![part(
            "",
            Dtype::F32,
            vec![r, c],
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )],
        MatrixData::F16(v) => vec![part("", Dtype::F16, vec![r, c], le16(v))],
        MatrixData::Q8 { q, scales } => vec![
            part(
                ".q",
                Dtype::I8,
                vec![r, c],
                q.iter().map(|&x| x as u8).collect(),
            ),
            part(".scale", Dtype::F16, vec![r, c / GROUP], le16(scales)),
        ],
        MatrixData::Q4 { q, scales, mins } => vec![
            part(".q", Dtype::U8, vec![r, c / 2], q.clone()),
            part(".scale", Dtype::F16, vec![r, c / GROUP], le16(scales)),
            part(".min", Dtype::F16, vec![r, c / GROUP], le16(mins)),
        ],
    }
}

/// Rows `start..end` of a matrix (any scheme).
pub fn slice_rows(m: &Matrix, start: usize, end: usize) -> Matrix {
    let (c, g) = (m.cols, m.cols / GROUP);
    let rows = end - start;
    let data = match &m.data {
        MatrixData::F32(v) => MatrixData::F32(v[start * c..end * c].to_vec()),
        MatrixData::F16(v) => MatrixData::F16(v[start * c..end * c].to_vec()),
        MatrixData::Q8 { q, scales } => MatrixData::Q8 {
            q: q[start * c..end * c].to_vec(),
            scales: scales[start * g..end * g].to_vec(),
        },
        MatrixData::Q4 { q, scales, mins } => MatrixData::Q4 {
            q: q[start * c / 2..end * c / 2].to_vec(),
            scales: scales[start * g..end * g].to_vec(),
            mins: mins[start * g..end * g].to_vec(),
        },
    };
    Matrix {
        rows,
        cols: c,
        data,
    }
}

/// A package in memory: the manifest and every file's bytes (tokenizer included).
pub struct PackageFiles {
    pub manifest: Manifest,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Packs tensors into shards of at most `max_bytes`, cutting big matrices into row pieces.
struct ShardWriter {
    max_bytes: usize,
    shards: Vec<Vec<Part>>,
    current_bytes: usize,
    tensors: Vec<TensorEntry>,
}

impl ShardWriter {
    fn push(&mut self, parts: Vec<Part>) -> String {
        // 256 bytes of header per tensor is a generous bound for its JSON entry.
        let size: usize = parts.iter().map(|p| p.data.len() + 256).sum();
        if self.current_bytes + size > self.max_bytes
            && !self.shards.last().is_some_and(Vec::is_empty)
        {
            self.shards.push(Vec::new());
            self.current_bytes = 0;
        }
        self.current_bytes += size;
        if let Some(shard) = self.shards.last_mut() {
            shard.extend(parts);
        }
        shard_name(self.shards.len() - 1)
    }

    fn vector(&mut self, name: &str, v: &[f32]) {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let file = self.push(vec![Part {
            key: name.to_string(),
            dtype: Dtype::F32,
            shape: vec![v.len()],
            data,
        }]);
        let pieces = vec![Piece {
            file,
            start_row: 0,
            rows: v.len(),
        }];
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            shape: vec![v.len()],
            scheme: Scheme::F32,
            pieces,
        });
    }

    fn matrix(&mut self, name: &str, m: &Matrix) {
        let row_bytes = m.bytes() / m.rows.max(1) + 1;
        let rows_per_piece = ((self.max_bytes / 2) / row_bytes).max(1);
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < m.rows {
            let end = (start + rows_per_piece).min(m.rows);
            let piece = if start == 0 && end == m.rows {
                m.clone()
            } else {
                slice_rows(m, start, end)
            };
            let file = self.push(matrix_parts(&piece_key(name, start), &piece));
            pieces.push(Piece {
                file,
                start_row: start,
                rows: end - start,
            });
            start = end;
        }
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            shape: vec![m.rows, m.cols],
            scheme: m.scheme(),
            pieces,
        });
    }
}

/// Builds a package from weights (in the schemes they already have) and tokenizer bytes.
pub fn build_package(
    name: &str,
    quantization: &str,
    weights: &Weights,
    tokenizer_json: &[u8],
    special: SpecialTokens,
    source: serde_json::Value,
    max_shard_bytes: usize,
) -> Result<PackageFiles> {
    let cfg = &weights.config;
    let mut w = ShardWriter {
        max_bytes: max_shard_bytes,
        shards: vec![Vec::new()],
        current_bytes: 0,
        tensors: Vec::new(),
    };
    w.vector("cond", &weights.cond);
    w.vector("rotary.inv_freq", &weights.inv_freq);
    w.matrix("embedding", &weights.embedding);
    for (l, lw) in weights.layers.iter().enumerate() {
        let p = format!("layers.{l}");
        w.vector(&format!("{p}.norm1"), &lw.norm1);
        w.matrix(&format!("{p}.qkv"), &lw.qkv);
        w.matrix(&format!("{p}.attn_out"), &lw.attn_out);
        w.vector(&format!("{p}.norm2"), &lw.norm2);
        w.matrix(&format!("{p}.mlp_in.weight"), &lw.mlp_in);
        w.vector(&format!("{p}.mlp_in.bias"), &lw.mlp_in_bias);
        w.matrix(&format!("{p}.mlp_out.weight"), &lw.mlp_out);
        w.vector(&format!("{p}.mlp_out.bias"), &lw.mlp_out_bias);
        w.vector(&format!("{p}.modulation"), &lw.modulation);
    }
    w.vector("final.norm", &weights.final_norm);
    w.vector("final.modulation", &weights.final_modulation);
    w.matrix("lm_head.weight", &weights.lm_head);
    w.vector("lm_head.bias", &weights.lm_head_bias);

    let mut files = Vec::new();
    let mut entries = Vec::new();
    for (i, parts) in w.shards.iter().enumerate() {
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        let bytes = safetensors::serialize(parts.iter().map(|p| (p.key.clone(), p)), Some(meta))
            .map_err(|e| Error::package(shard_name(i), format!("cannot serialize: {e}")))?;
        if bytes.len() > max_shard_bytes {
            return Err(Error::package(
                shard_name(i),
                format!(
                    "shard is {} bytes, over the {max_shard_bytes} limit",
                    bytes.len()
                ),
            ));
        }
        entries.push(FileEntry {
            file: shard_name(i),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
        files.push((shard_name(i), bytes));
    }
    let tokenizer = FileEntry {
        file: "tokenizer.json".into(),
        bytes: tokenizer_json.len() as u64,
        sha256: sha256_hex(tokenizer_json),
    };
    files.push(("tokenizer.json".to_string(), tokenizer_json.to_vec()));
    let download_bytes = files.iter().map(|(_, b)| b.len() as u64).sum();
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        name: name.to_string(),
        quantization: quantization.to_string(),
        config: cfg.to_json(),
        special_tokens: special,
        tokenizer,
        files: entries,
        tensors: w.tensors,
        parameters: weights.parameter_count(),
        download_bytes,
        gpu_bytes: (weights.stored_bytes() + crate::weights::kv_cache_bytes(cfg)) as u64,
        source,
    };
    manifest.validate()?;
    Ok(PackageFiles { manifest, files })
}

fn shard_name(i: usize) -> String {
    format!("weights-{i:05}.safetensors")
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

/// Re-encodes every matrix of f32 weights according to `plan` (rows that do not suit a
/// scheme fall back to f16, then f32).
pub fn quantize_weights(weights: &Weights, plan: SchemePlan) -> Weights {
    let q = |m: &Matrix, s: Scheme| {
        let m = if m.scheme() == Scheme::F32 {
            m.clone()
        } else {
            Matrix::from_f32(m.rows, m.cols, m.to_f32())
        };
        let s = [s, Scheme::F16, Scheme::F32]
            .into_iter()
            .find(|s| s.supports_cols(m.cols))
            .unwrap_or(Scheme::F32);
        m.quantize(s)
    };
    Weights {
        embedding: q(&weights.embedding, plan.embedding),
        lm_head: q(&weights.lm_head, plan.lm_head),
        layers: weights
            .layers
            .iter()
            .map(|l| LayerWeights {
                qkv: q(&l.qkv, plan.transformer),
                attn_out: q(&l.attn_out, plan.transformer),
                mlp_in: q(&l.mlp_in, plan.transformer),
                mlp_out: q(&l.mlp_out, plan.transformer),
                ..l.clone()
            })
            .collect(),
        ..weights.clone()
    }
}
