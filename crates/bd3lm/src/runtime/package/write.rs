//! Writing packages: tensors are packed into safetensors shards of at most a given size, big
//! matrices cut into row pieces, and every finished shard is handed to a sink right away, so
//! a converter never holds more than one shard (plus the tensor it is working on) in memory.

use super::{
    sha256_hex, FileEntry, Manifest, Piece, SpecialTokens, TensorEntry, TensorPiece, FORMAT,
    FORMAT_VERSION,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::quant::{Matrix, MatrixData, Scheme, GROUP};
use crate::weights::{kv_cache_bytes, Weights};
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::cell::RefCell;

/// Generous bound on the safetensors header bytes one tensor entry takes.
const HEADER_BYTES_PER_PART: usize = 256;
/// Header bytes of a shard independent of its tensors (length prefix, metadata).
const HEADER_BYTES_FIXED: usize = 1024;

/// One safetensors tensor of a shard.
struct Part {
    key: String,
    dtype: Dtype,
    shape: Vec<usize>,
    len: usize,
    /// Taken out when the shard is serialized (`safetensors::serialize` reads each tensor's
    /// data once), so a shard's parts are freed as its bytes are written: a 64 MB shard
    /// never exists twice in memory (this matters in a browser tab).
    data: RefCell<Vec<u8>>,
}

impl Part {
    fn new(key: String, dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> Part {
        Part {
            key,
            dtype,
            shape,
            len: data.len(),
            data: RefCell::new(data),
        }
    }
}

impl View for &Part {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(std::mem::take(&mut *self.data.borrow_mut()))
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

fn le_bytes_u16(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le_bytes_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The safetensors parts of one matrix piece (`docs/package-format.md`, tensor layouts).
fn matrix_parts(key: &str, m: &Matrix) -> Vec<Part> {
    let (r, c) = (m.rows, m.cols);
    let part = |suffix: &str, dtype, shape: Vec<usize>, data| {
        Part::new(format!("{key}{suffix}"), dtype, shape, data)
    };
    match &m.data {
        MatrixData::F32(v) => vec![part("", Dtype::F32, vec![r, c], le_bytes_f32(v))],
        MatrixData::F16(v) => vec![part("", Dtype::F16, vec![r, c], le_bytes_u16(v))],
        MatrixData::Q8 { q, scales } => vec![
            part(
                ".q",
                Dtype::I8,
                vec![r, c],
                q.iter().map(|&x| x as u8).collect(),
            ),
            part(
                ".scale",
                Dtype::F16,
                vec![r, c / GROUP],
                le_bytes_u16(scales),
            ),
        ],
        MatrixData::Q4 { q, scales, mins } => vec![
            part(".q", Dtype::U8, vec![r, c / 2], q.clone()),
            part(
                ".scale",
                Dtype::F16,
                vec![r, c / GROUP],
                le_bytes_u16(scales),
            ),
            part(".min", Dtype::F16, vec![r, c / GROUP], le_bytes_u16(mins)),
        ],
    }
}

/// Capacity for `rows` more rows of a matrix.
fn reserve_rows(m: &mut Matrix, rows: usize) {
    let (c, g) = (m.cols, m.cols / GROUP);
    match &mut m.data {
        MatrixData::F32(v) => v.reserve_exact(rows * c),
        MatrixData::F16(v) => v.reserve_exact(rows * c),
        MatrixData::Q8 { q, scales } => {
            q.reserve_exact(rows * c);
            scales.reserve_exact(rows * g);
        }
        MatrixData::Q4 { q, scales, mins } => {
            q.reserve_exact(rows * c / 2);
            scales.reserve_exact(rows * g);
            mins.reserve_exact(rows * g);
        }
    }
}

/// Rows `start..end` of a matrix (any scheme).
pub fn slice_rows(m: &Matrix, start: usize, end: usize) -> Matrix {
    let (c, g) = (m.cols, m.cols / GROUP);
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
        rows: end - start,
        cols: c,
        data,
    }
}

/// Name of shard `i` inside a package.
pub fn shard_name(i: usize) -> String {
    format!("weights-{i:05}.safetensors")
}

/// Key of a tensor piece inside its shard: the tensor name, `@start_row` for later pieces.
pub fn piece_key(name: &str, start_row: usize) -> String {
    if start_row == 0 {
        name.to_string()
    } else {
        format!("{name}@{start_row}")
    }
}

/// Everything the manifest needs besides the tensors and files.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub name: String,
    /// Headline format (`f32`, `f16`, `q8`, `q4`).
    pub quantization: String,
    pub config: Config,
    pub special_tokens: SpecialTokens,
    pub source: serde_json::Value,
}

/// Streams tensors into shards; `sink(file_name, bytes)` receives each finished file.
pub struct PackageWriter<S: FnMut(&str, Vec<u8>) -> Result<()>> {
    max_bytes: usize,
    current: Vec<Part>,
    current_bytes: usize,
    files: Vec<FileEntry>,
    tensors: Vec<TensorEntry>,
    parameters: usize,
    stored_bytes: usize,
    /// The matrix whose rows are arriving, if any.
    open: Option<OpenMatrix>,
    /// Also receives every tensor piece as it is stored (an engine loading while converting).
    observer: Option<PieceObserver>,
    sink: S,
}

/// A callback for each tensor piece as the writer stores it.
pub type PieceObserver = Box<dyn FnMut(&str, TensorPiece) -> Result<()>>;

/// A matrix being written row batch by row batch.
struct OpenMatrix {
    entry: TensorEntry,
    rows_per_piece: usize,
    /// Rows of the next piece that arrived so far (fewer than a piece).
    buffered: Option<Matrix>,
    rows_written: usize,
}

impl<S: FnMut(&str, Vec<u8>) -> Result<()>> PackageWriter<S> {
    pub fn new(max_shard_bytes: usize, sink: S) -> Self {
        PackageWriter {
            max_bytes: max_shard_bytes,
            current: Vec::new(),
            current_bytes: HEADER_BYTES_FIXED,
            files: Vec::new(),
            tensors: Vec::new(),
            parameters: 0,
            stored_bytes: 0,
            open: None,
            observer: None,
            sink,
        }
    }

    /// Hands every stored piece to `observer` too (in storage order), so an engine can load
    /// the model while it is being converted.
    pub fn observe_pieces(&mut self, observer: PieceObserver) {
        self.observer = Some(observer);
    }

    /// Serializes the open shard and hands it to the sink.
    fn flush(&mut self) -> Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let name = shard_name(self.files.len());
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        let parts = std::mem::take(&mut self.current);
        let data_len: usize = parts.iter().map(|p| p.len).sum();
        let bytes = safetensors::serialize(parts.iter().map(|p| (p.key.clone(), p)), Some(meta))
            .map_err(|e| Error::package(name.clone(), format!("cannot serialize: {e}")))?;
        drop(parts);
        let header_len = bytes.get(..8).map_or(0, |b| {
            u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize
        });
        if bytes.len() != 8 + header_len + data_len {
            return Err(Error::package(
                name,
                "a tensor's data was not written exactly once",
            ));
        }
        if bytes.len() > self.max_bytes {
            return Err(Error::package(
                name,
                format!(
                    "shard is {} bytes, over the {} limit",
                    bytes.len(),
                    self.max_bytes
                ),
            ));
        }
        self.files.push(FileEntry {
            file: name.clone(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
        self.current_bytes = HEADER_BYTES_FIXED;
        (self.sink)(&name, bytes)
    }

    /// Adds parts to the open shard (starting a new one when they would not fit) and returns
    /// the shard's file name.
    fn push(&mut self, parts: Vec<Part>) -> Result<String> {
        let size: usize = parts.iter().map(|p| p.len + HEADER_BYTES_PER_PART).sum();
        if self.current_bytes + size > self.max_bytes && !self.current.is_empty() {
            self.flush()?;
        }
        self.current_bytes += size;
        self.current.extend(parts);
        Ok(shard_name(self.files.len()))
    }

    /// Adds an f32 vector (biases, norms, modulation constants).
    pub fn vector(&mut self, name: &str, v: &[f32]) -> Result<()> {
        let part = Part::new(name.to_string(), Dtype::F32, vec![v.len()], le_bytes_f32(v));
        let file = self.push(vec![part])?;
        if name != "cond" && name != "rotary.inv_freq" {
            self.parameters += v.len();
        }
        self.stored_bytes += v.len() * 4;
        if let Some(observe) = self.observer.as_mut() {
            observe(name, TensorPiece::Vector(v.to_vec()))?;
        }
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            shape: vec![v.len()],
            scheme: Scheme::F32,
            pieces: vec![Piece {
                file,
                start_row: 0,
                rows: v.len(),
            }],
        });
        Ok(())
    }

    /// Adds a matrix in the scheme it is stored in, cut into row pieces of at most half a shard.
    pub fn matrix(&mut self, name: &str, m: &Matrix) -> Result<()> {
        self.begin_matrix(name, m.rows, m.cols, m.scheme())?;
        self.matrix_rows(m.clone())?;
        self.end_matrix()
    }

    /// Rows per piece of a matrix with `cols` columns in `scheme`: half a shard at most, so a
    /// piece never straddles shards. Depends only on the scheme and the row length, so a matrix
    /// written row batch by row batch is cut exactly as one written whole.
    fn rows_per_piece(&self, scheme: Scheme, cols: usize) -> usize {
        let row_bytes = scheme.bytes(1, cols) + 1;
        let budget = self.max_bytes.saturating_sub(HEADER_BYTES_FIXED) / 2;
        (budget / row_bytes).max(1)
    }

    /// Starts a `rows x cols` matrix whose rows arrive (already encoded in `scheme`) through
    /// [`PackageWriter::matrix_rows`]; [`PackageWriter::end_matrix`] closes it.
    pub fn begin_matrix(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        scheme: Scheme,
    ) -> Result<()> {
        if let Some(open) = &self.open {
            return Err(Error::package(
                name,
                format!("matrix `{}` is still being written", open.entry.name),
            ));
        }
        self.open = Some(OpenMatrix {
            entry: TensorEntry {
                name: name.to_string(),
                shape: vec![rows, cols],
                scheme,
                pieces: Vec::new(),
            },
            rows_per_piece: self.rows_per_piece(scheme, cols),
            buffered: None,
            rows_written: 0,
        });
        Ok(())
    }

    /// The next rows of the open matrix; every full piece goes into the shards at once.
    pub fn matrix_rows(&mut self, rows: Matrix) -> Result<()> {
        let Some(mut open) = self.open.take() else {
            return Err(Error::package("package", "rows given with no open matrix"));
        };
        let (total, cols) = (open.entry.shape[0], open.entry.shape[1]);
        let arrived = open.rows_written + open.buffered.as_ref().map_or(0, |m| m.rows);
        if rows.cols != cols || rows.scheme() != open.entry.scheme || arrived + rows.rows > total {
            return Err(Error::package(
                &open.entry.name,
                format!(
                    "rows of {} x {} in {} do not continue a {total} x {cols} {} matrix at row {arrived}",
                    rows.rows,
                    rows.cols,
                    rows.scheme().name(),
                    open.entry.scheme.name()
                ),
            ));
        }
        let (mut next, n) = (0, rows.rows);
        let mut source = Some(rows);
        while next < n {
            let have = open.buffered.as_ref().map_or(0, |m| m.rows);
            let take = (open.rows_per_piece - have).min(n - next);
            let part = match &source {
                // The whole batch is one piece (or the end of one): no copy.
                Some(_) if next == 0 && take == n => match source.take() {
                    Some(m) => m,
                    None => break,
                },
                Some(m) => slice_rows(m, next, next + take),
                None => break,
            };
            next += take;
            let piece = match open.buffered.take() {
                None => part,
                Some(mut held) => {
                    held.rows += part.rows;
                    // Same scheme checked above, so appending cannot fail.
                    let _ = held.data.append(part.data);
                    held
                }
            };
            let needed = open.rows_per_piece.min(total - open.rows_written);
            let complete = piece.rows == needed;
            if complete {
                let start = open.rows_written;
                let file = self.push(matrix_parts(&piece_key(&open.entry.name, start), &piece))?;
                open.entry.pieces.push(Piece {
                    file,
                    start_row: start,
                    rows: piece.rows,
                });
                open.rows_written += piece.rows;
                if let Some(observe) = self.observer.as_mut() {
                    let rows = TensorPiece::Rows {
                        start_row: start,
                        total_rows: total,
                        matrix: piece,
                    };
                    if let Err(e) = observe(&open.entry.name, rows) {
                        self.open = Some(open);
                        return Err(e);
                    }
                }
            } else {
                let mut piece = piece;
                // Room for the whole piece at once: no doubling, no fragments (wasm memory).
                let more = needed - piece.rows;
                reserve_rows(&mut piece, more);
                open.buffered = Some(piece);
            }
        }
        self.open = Some(open);
        Ok(())
    }

    /// Closes the open matrix (every row must have arrived).
    pub fn end_matrix(&mut self) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Err(Error::package("package", "no open matrix to end"));
        };
        let (rows, cols) = (open.entry.shape[0], open.entry.shape[1]);
        if open.rows_written != rows || open.buffered.is_some() {
            return Err(Error::package(
                &open.entry.name,
                format!("only {} of {rows} rows arrived", open.rows_written),
            ));
        }
        self.parameters += rows * cols;
        self.stored_bytes += open.entry.scheme.bytes(rows, cols);
        self.tensors.push(open.entry);
        Ok(())
    }

    /// Writes the last shard and the tokenizer; returns the (validated) manifest, which the
    /// caller stores as `manifest.json`.
    pub fn finish(mut self, info: PackageInfo, tokenizer_json: &[u8]) -> Result<Manifest> {
        if let Some(open) = &self.open {
            return Err(Error::package(
                &open.entry.name,
                "the matrix was never finished",
            ));
        }
        self.flush()?;
        let tokenizer = FileEntry {
            file: "tokenizer.json".into(),
            bytes: tokenizer_json.len() as u64,
            sha256: sha256_hex(tokenizer_json),
        };
        (self.sink)("tokenizer.json", tokenizer_json.to_vec())?;
        let download_bytes =
            self.files.iter().map(|f| f.bytes).sum::<u64>() + tokenizer_json.len() as u64;
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            name: info.name,
            quantization: info.quantization,
            config: info.config.to_json(),
            special_tokens: info.special_tokens,
            tokenizer,
            files: self.files,
            tensors: self.tensors,
            parameters: self.parameters,
            download_bytes,
            gpu_bytes: (self.stored_bytes + kv_cache_bytes(&info.config)) as u64,
            source: info.source,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

/// Writes every tensor of `weights` (in the schemes they already have) in canonical order.
pub fn write_weights<S: FnMut(&str, Vec<u8>) -> Result<()>>(
    w: &mut PackageWriter<S>,
    weights: &Weights,
) -> Result<()> {
    w.vector("cond", &weights.cond)?;
    w.vector("rotary.inv_freq", &weights.inv_freq)?;
    w.matrix("embedding", &weights.embedding)?;
    for (l, lw) in weights.layers.iter().enumerate() {
        let p = format!("layers.{l}");
        w.vector(&format!("{p}.norm1"), &lw.norm1)?;
        w.matrix(&format!("{p}.qkv"), &lw.qkv)?;
        w.matrix(&format!("{p}.attn_out"), &lw.attn_out)?;
        w.vector(&format!("{p}.norm2"), &lw.norm2)?;
        w.matrix(&format!("{p}.mlp_in.weight"), &lw.mlp_in)?;
        w.vector(&format!("{p}.mlp_in.bias"), &lw.mlp_in_bias)?;
        w.matrix(&format!("{p}.mlp_out.weight"), &lw.mlp_out)?;
        w.vector(&format!("{p}.mlp_out.bias"), &lw.mlp_out_bias)?;
        w.vector(&format!("{p}.modulation"), &lw.modulation)?;
    }
    w.vector("final.norm", &weights.final_norm)?;
    w.vector("final.modulation", &weights.final_modulation)?;
    w.matrix("lm_head.weight", &weights.lm_head)?;
    w.vector("lm_head.bias", &weights.lm_head_bias)
}

/// A package in memory: the manifest and every file's bytes (tokenizer included).
pub struct PackageFiles {
    pub manifest: Manifest,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Builds a package in memory from weights (in the schemes they already have).
pub fn build_package(
    name: &str,
    quantization: &str,
    weights: &Weights,
    tokenizer_json: &[u8],
    special: SpecialTokens,
    source: serde_json::Value,
    max_shard_bytes: usize,
) -> Result<PackageFiles> {
    let mut files = Vec::new();
    let mut writer = PackageWriter::new(max_shard_bytes, |name: &str, bytes: Vec<u8>| {
        files.push((name.to_string(), bytes));
        Ok(())
    });
    write_weights(&mut writer, weights)?;
    let info = PackageInfo {
        name: name.to_string(),
        quantization: quantization.to_string(),
        config: weights.config.clone(),
        special_tokens: special,
        source,
    };
    let manifest = writer.finish(info, tokenizer_json)?;
    Ok(PackageFiles { manifest, files })
}
