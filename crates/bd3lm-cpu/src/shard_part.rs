//! Reading a party's part of a verified shard straight from its bytes (the page's CPU
//! workers, `crate::split`): only the rows the party keeps are copied out, so a worker's wasm
//! memory never holds a whole 64 MB shard, nor its parsed pieces. Checks each tensor's dtype,
//! shape and extent as `bd3lm::package::read_shard` does, and gives the same pieces (sliced).

use bd3lm::package::{piece_key, Manifest, TensorPiece};
use bd3lm::quant::{Matrix, MatrixData, Scheme, GROUP};
use bd3lm::{Error, Result};
use std::ops::Range;

/// Random access to a shard's bytes (in a worker, a JS `Uint8Array`: only what is read is
/// copied into wasm memory).
pub trait ShardBytes {
    fn byte_len(&self) -> usize;
    fn read(&self, range: Range<usize>) -> Vec<u8>;
}

impl ShardBytes for [u8] {
    fn byte_len(&self) -> usize {
        self.len()
    }
    fn read(&self, range: Range<usize>) -> Vec<u8> {
        self[range].to_vec()
    }
}

/// What a party keeps of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    Whole,
    /// These rows of a matrix, as a piece of the slice (rows renumbered from the start).
    Rows(Range<usize>),
}

/// The shard's header (`8 + n` bytes: length, then JSON) and where its data starts.
struct Header {
    file: String,
    data_start: usize,
    len: usize,
    entries: serde_json::Map<String, serde_json::Value>,
}

impl Header {
    fn read(file: &str, bytes: &(impl ShardBytes + ?Sized)) -> Result<Header> {
        let bad = |m: &str| Error::package(file, format!("not a safetensors file: {m}"));
        let len = bytes.byte_len();
        if len < 8 {
            return Err(bad("too short"));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes.read(0..8));
        let n = usize::try_from(u64::from_le_bytes(n)).map_err(|_| bad("header length"))?;
        if n > len - 8 {
            return Err(bad("header longer than the file"));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&bytes.read(8..8 + n)).map_err(|e| bad(&e.to_string()))?;
        let serde_json::Value::Object(entries) = json else {
            return Err(bad("header is not an object"));
        };
        Ok(Header {
            file: file.to_string(),
            data_start: 8 + n,
            len,
            entries,
        })
    }

    /// Absolute byte range of tensor `name`, checked to be `dtype` of `shape`.
    fn locate(&self, name: &str, dtype: &str, shape: &[usize]) -> Result<Range<usize>> {
        let file = self.file.clone();
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            file: file.clone(),
            name: name.to_string(),
        })?;
        let found = entry["dtype"].as_str().unwrap_or_default();
        if found != dtype {
            return Err(Error::TensorDtype {
                file,
                name: name.to_string(),
                expected: dtype.to_string(),
                found: found.to_string(),
            });
        }
        let dims: Vec<usize> = usize_list(&entry["shape"]);
        if dims != shape {
            return Err(Error::TensorShape {
                file,
                name: name.to_string(),
                expected: shape.to_vec(),
                found: dims,
            });
        }
        let offsets: Vec<usize> = usize_list(&entry["data_offsets"]);
        let size = if dtype == "F32" {
            4
        } else if dtype == "F16" {
            2
        } else {
            1
        };
        let want = shape.iter().product::<usize>() * size;
        match offsets[..] {
            [a, b] if b >= a && b - a == want && self.data_start + b <= self.len => {
                Ok(self.data_start + a..self.data_start + b)
            }
            _ => Err(Error::package(
                &self.file,
                format!("tensor `{name}`: data offsets do not match its shape"),
            )),
        }
    }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The pieces of shard `file` that `keep` asks for (by tensor name).
pub fn read_shard_part(
    manifest: &Manifest,
    file: &str,
    bytes: &(impl ShardBytes + ?Sized),
    keep: impl Fn(&str) -> Keep,
) -> Result<Vec<(String, TensorPiece)>> {
    let header = Header::read(file, bytes)?;
    let mut out = Vec::new();
    for t in &manifest.tensors {
        let kept = keep(&t.name);
        if kept == Keep::Nothing {
            continue;
        }
        for p in t.pieces.iter().filter(|p| p.file == file) {
            let key = piece_key(&t.name, p.start_row);
            if t.shape.len() == 1 {
                let range = header.locate(&key, "F32", &t.shape)?;
                out.push((
                    t.name.clone(),
                    TensorPiece::Vector(f32s(&bytes.read(range))),
                ));
                continue;
            }
            let (rows, cols) = (p.rows, t.shape[1]);
            // Rows lo..hi of the piece, and where they land in what is kept.
            let (lo, hi, start_row, total_rows) = match &kept {
                Keep::Rows(k) => {
                    let (a, b) = (p.start_row.max(k.start), (p.start_row + rows).min(k.end));
                    if a >= b {
                        continue;
                    }
                    (a - p.start_row, b - p.start_row, a - k.start, k.len())
                }
                _ => (0, rows, p.start_row, t.shape[0]),
            };
            let read_rows = |suffix: &str, dtype: &str, width: usize| -> Result<Vec<u8>> {
                let range = header.locate(&format!("{key}{suffix}"), dtype, &[rows, width])?;
                let row = range.len() / rows.max(1);
                Ok(bytes.read(range.start + lo * row..range.start + hi * row))
            };
            let groups = cols / GROUP;
            let data = match t.scheme {
                Scheme::F32 => MatrixData::F32(f32s(&read_rows("", "F32", cols)?)),
                Scheme::F16 => MatrixData::F16(u16s(&read_rows("", "F16", cols)?)),
                Scheme::Q8 => MatrixData::Q8 {
                    q: read_rows(".q", "I8", cols)?
                        .into_iter()
                        .map(|b| b as i8)
                        .collect(),
                    scales: u16s(&read_rows(".scale", "F16", groups)?),
                },
                Scheme::Q4 => MatrixData::Q4 {
                    q: read_rows(".q", "U8", cols / 2)?,
                    scales: u16s(&read_rows(".scale", "F16", groups)?),
                    mins: u16s(&read_rows(".min", "F16", groups)?),
                },
            };
            let matrix = Matrix {
                rows: hi - lo,
                cols,
                data,
            };
            out.push((
                t.name.clone(),
                TensorPiece::Rows {
                    start_row,
                    total_rows,
                    matrix,
                },
            ));
        }
    }
    Ok(out)
}

/// A JSON array of unsigned integers (a shape, data offsets); what is not one reads as empty,
/// which the callers then refuse as a wrong shape or offsets.
fn usize_list(value: &serde_json::Value) -> Vec<usize> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_u64())
                .map(|d| d as usize)
                .collect()
        })
        .unwrap_or_default()
}
