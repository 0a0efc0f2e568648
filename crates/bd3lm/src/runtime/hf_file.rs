//! Reading a Hugging Face `model.safetensors` one tensor at a time: the header is parsed up
//! front ([`SafetensorsHeader`], a pure function of untrusted bytes, fuzzed), then each tensor
//! is read with a seek ([`HfFile`]), so a 679 MB checkpoint converts without being held in
//! memory. Nothing is allocated from a size the header claims before it is checked against
//! the file's real length.

use crate::checkpoint::hf_tensors;
use crate::config::Config;
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;

/// safetensors caps headers at 100 MB; anything bigger is not a safetensors file.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Where one tensor's bytes are, as the header states them (offsets relative to the data
/// section, checked to lie inside the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub start: u64,
    pub end: u64,
}

/// The parsed header of a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsHeader {
    /// Byte offset of the data section (8 + header length).
    pub data_start: u64,
    pub tensors: HashMap<String, TensorInfo>,
}

fn bad(file: &str, message: String) -> Error {
    Error::Safetensors {
        file: file.to_string(),
        message,
    }
}

impl SafetensorsHeader {
    /// The header length stored in the first 8 bytes, checked against the file length.
    pub fn header_len(file: &str, first8: &[u8], file_len: u64) -> Result<u64> {
        let Some(n) = first8.get(..8) else {
            return Err(bad(
                file,
                format!("{file_len} bytes is shorter than the 8-byte header length (truncated?)"),
            ));
        };
        let mut le = [0u8; 8];
        le.copy_from_slice(n);
        let header_len = u64::from_le_bytes(le);
        if header_len > MAX_HEADER_BYTES || header_len > file_len.saturating_sub(8) {
            return Err(bad(
                file,
                format!(
                    "header length {header_len} does not fit the {file_len}-byte file (truncated?)"
                ),
            ));
        }
        Ok(header_len)
    }

    /// Parses the JSON header (the `header_len` bytes after the first 8) of a file of
    /// `file_len` bytes. Every tensor's byte range must lie inside the file.
    pub fn parse(file: &str, header: &[u8], file_len: u64) -> Result<SafetensorsHeader> {
        let header_value: Value = serde_json::from_slice(header)
            .map_err(|e| bad(file, format!("header is not JSON: {e}")))?;
        let entries = header_value
            .as_object()
            .ok_or_else(|| bad(file, "header is not a JSON object".into()))?;
        let data_start = 8 + header.len() as u64;
        let mut tensors = HashMap::new();
        for (name, entry) in entries {
            if name == "__metadata__" {
                continue;
            }
            let field = |f: &str| {
                entry
                    .get(f)
                    .ok_or_else(|| bad(file, format!("tensor `{name}` has no `{f}`")))
            };
            let dtype = field("dtype")?
                .as_str()
                .ok_or_else(|| bad(file, format!("tensor `{name}`: `dtype` is not a string")))?
                .to_string();
            let numbers = |f: &str| -> Result<Vec<u64>> {
                field(f)?
                    .as_array()
                    .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
                    .ok_or_else(|| {
                        bad(
                            file,
                            format!("tensor `{name}`: `{f}` is not a list of integers"),
                        )
                    })
            };
            let shape = numbers("shape")?
                .into_iter()
                .map(usize::try_from)
                .collect::<std::result::Result<Vec<usize>, _>>()
                .map_err(|_| bad(file, format!("tensor `{name}`: a dimension is too large")))?;
            let offsets = numbers("data_offsets")?;
            let [start, end] = offsets[..] else {
                return Err(bad(
                    file,
                    format!("tensor `{name}`: `data_offsets` needs two entries"),
                ));
            };
            let file_end = data_start.checked_add(end);
            if start > end || file_end.is_none_or(|e| e > file_len) {
                return Err(bad(
                    file,
                    format!(
                        "tensor `{name}` ends at byte {} but the file has {file_len} bytes (truncated?)",
                        data_start.saturating_add(end)
                    ),
                ));
            }
            tensors.insert(
                name.clone(),
                TensorInfo {
                    dtype,
                    shape,
                    start,
                    end,
                },
            );
        }
        Ok(SafetensorsHeader {
            data_start,
            tensors,
        })
    }

    /// The tensor `name`, checked to have `shape`, a checkpoint dtype (f32, f16 or bf16) and
    /// exactly the bytes that needs.
    pub fn tensor(
        &self,
        file: &str,
        name: &str,
        shape: &[usize],
    ) -> Result<(&TensorInfo, CheckpointDtype)> {
        let info = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            file: file.to_string(),
            name: name.to_string(),
        })?;
        if info.shape != shape {
            return Err(Error::TensorShape {
                file: file.to_string(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        let dtype = CheckpointDtype::parse(&info.dtype).ok_or_else(|| Error::TensorDtype {
            file: file.to_string(),
            name: name.to_string(),
            expected: CheckpointDtype::EXPECTED.into(),
            found: info.dtype.clone(),
        })?;
        let bytes = shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        if bytes != Some(info.end - info.start) {
            return Err(bad(
                file,
                format!(
                    "tensor `{name}` has {} data bytes for shape {shape:?} in {}",
                    info.end - info.start,
                    dtype.name()
                ),
            ));
        }
        Ok((info, dtype))
    }

    /// The tensors in the order of their bytes in the file (a stream delivers them so).
    pub fn in_file_order(&self) -> Vec<(&str, &TensorInfo)> {
        let mut all: Vec<(&str, &TensorInfo)> = self
            .tensors
            .iter()
            .map(|(name, info)| (name.as_str(), info))
            .collect();
        all.sort_by(|a, b| (a.1.start, a.1.end, a.0).cmp(&(b.1.start, b.1.end, b.0)));
        all
    }

    /// Checks names, shapes and dtypes of every tensor the config needs.
    pub fn check(&self, file: &str, cfg: &Config) -> Result<()> {
        for (name, shape) in hf_tensors(cfg) {
            self.tensor(file, &name, &shape)?;
        }
        Ok(())
    }
}

/// The element types a checkpoint may store; every one is read as f32 (exactly: f16 and
/// bf16 values are all representable in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointDtype {
    F32,
    F16,
    BF16,
}

impl CheckpointDtype {
    /// What an error says a checkpoint tensor may be.
    pub const EXPECTED: &'static str = "F32, F16 or BF16";

    /// From the safetensors dtype string.
    pub fn parse(dtype: &str) -> Option<CheckpointDtype> {
        match dtype {
            "F32" => Some(CheckpointDtype::F32),
            "F16" => Some(CheckpointDtype::F16),
            "BF16" => Some(CheckpointDtype::BF16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CheckpointDtype::F32 => "F32",
            CheckpointDtype::F16 => "F16",
            CheckpointDtype::BF16 => "BF16",
        }
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            CheckpointDtype::F32 => 4,
            CheckpointDtype::F16 | CheckpointDtype::BF16 => 2,
        }
    }

    /// Appends the little-endian values in `bytes` (whole values; a trailing partial value is
    /// ignored, callers pass exact lengths) to `out` as f32.
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            CheckpointDtype::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            CheckpointDtype::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
            ),
            // bf16 is the upper half of an f32.
            CheckpointDtype::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)),
            ),
        }
    }

    /// The values in `bytes` as f32.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        let mut out = Vec::with_capacity(bytes.len() / self.size());
        self.decode_into(bytes, &mut out);
        out
    }
}

/// Decodes little-endian f32 values (exact length checked by the caller).
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    CheckpointDtype::F32.decode(bytes)
}

/// A safetensors file on disk, read tensor by tensor.
#[cfg(not(target_arch = "wasm32"))]
pub struct HfFile {
    name: String,
    file: std::fs::File,
    len: u64,
    header: SafetensorsHeader,
}

#[cfg(not(target_arch = "wasm32"))]
impl HfFile {
    pub fn open(path: &std::path::Path) -> Result<HfFile> {
        use std::io::Read;
        let name = path.display().to_string();
        let io = |e: std::io::Error| Error::io(name.clone(), e.to_string());
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut first8 = Vec::with_capacity(8);
        (&mut file).take(8).read_to_end(&mut first8).map_err(io)?;
        let header_len = SafetensorsHeader::header_len(&name, &first8, len)?;
        // Checked against the file length above, so this allocation is bounded by the file.
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let header = SafetensorsHeader::parse(&name, &header, len)?;
        Ok(HfFile {
            name,
            file,
            len,
            header,
        })
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty (never true for a file that opened).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn header(&self) -> &SafetensorsHeader {
        &self.header
    }

    /// Checks names, shapes and dtypes of every tensor of the config before any work starts.
    pub fn check(&self, cfg: &Config) -> Result<()> {
        self.header.check(&self.name, cfg)
    }

    /// Reads one tensor as f32 (from f32, f16 or bf16) after checking its dtype and shape.
    pub fn read_f32(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        use std::io::{Read, Seek, SeekFrom};
        let (info, dtype) = self.header.tensor(&self.name, name, shape)?;
        let (start, end) = (info.start, info.end);
        let mut bytes = vec![0u8; (end - start) as usize];
        self.file
            .seek(SeekFrom::Start(self.header.data_start + start))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| Error::io(self.name.clone(), format!("reading tensor `{name}`: {e}")))?;
        Ok(dtype.decode(&bytes))
    }

    /// The file itself, for reading it front to back (a conversion in file order).
    pub fn into_file(self) -> std::fs::File {
        self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_json(entries: &str) -> Vec<u8> {
        format!("{{\"__metadata__\":{{\"format\":\"pt\"}},{entries}}}").into_bytes()
    }

    #[test]
    fn a_valid_header_parses() {
        let h = header_json(r#""a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}"#);
        let len = 8 + h.len() as u64 + 24;
        let parsed = SafetensorsHeader::parse("t", &h, len).expect("valid header");
        let (a, dtype) = parsed.tensor("t", "a", &[2, 3]).expect("tensor a");
        assert_eq!(dtype, CheckpointDtype::F32);
        assert_eq!((a.start, a.end), (0, 24));
        assert_eq!(parsed.data_start, 8 + h.len() as u64);
    }

    #[test]
    fn claims_beyond_the_file_fail_before_any_allocation() {
        // A header that claims a 100 GB tensor in a small file.
        let h = header_json(
            r#""a":{"dtype":"F32","shape":[25000000000],"data_offsets":[0,100000000000]}"#,
        );
        let err = SafetensorsHeader::parse("t", &h, 1000).expect_err("must fail");
        assert!(err.to_string().contains("truncated"), "{err}");
        // Offsets near u64::MAX must not overflow.
        let h = header_json(
            r#""a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}"#,
        );
        assert!(SafetensorsHeader::parse("t", &h, 1000).is_err());
        // A header length larger than the file.
        let len = 100u64;
        let first8 = 1_000u64.to_le_bytes();
        assert!(SafetensorsHeader::header_len("t", &first8, len).is_err());
        assert!(SafetensorsHeader::header_len("t", &first8[..3], len).is_err());
    }

    #[test]
    fn shape_and_byte_count_must_agree() {
        let h = header_json(r#""a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}"#);
        let parsed = SafetensorsHeader::parse("t", &h, 1000).expect("parses");
        assert!(parsed.tensor("t", "a", &[2, 3]).is_err());
        // 4 * (2^32 - 1)^3 bytes overflows u64: an error, not a wrap-around.
        let h = header_json(
            r#""a":{"dtype":"F32","shape":[4294967295,4294967295,4294967295],"data_offsets":[0,16]}"#,
        );
        let parsed = SafetensorsHeader::parse("t", &h, 1000).expect("parses");
        let shape = [4294967295usize, 4294967295, 4294967295];
        assert!(parsed.tensor("t", "a", &shape).is_err());
    }

    /// Every bound of the header at its edge: what just fits is accepted, one byte more is not.
    #[test]
    fn bounds_hold_exactly_at_their_edges() {
        // The header length: exactly the rest of the file, and the 100 MB cap.
        let len_bytes = |n: u64| n.to_le_bytes();
        assert_eq!(
            SafetensorsHeader::header_len("t", &len_bytes(92), 100).ok(),
            Some(92)
        );
        assert!(SafetensorsHeader::header_len("t", &len_bytes(93), 100).is_err());
        assert!(SafetensorsHeader::header_len("t", &len_bytes(0), 8).is_ok());
        let huge = u64::MAX / 2;
        assert_eq!(
            SafetensorsHeader::header_len("t", &len_bytes(MAX_HEADER_BYTES), huge).ok(),
            Some(MAX_HEADER_BYTES)
        );
        assert!(
            SafetensorsHeader::header_len("t", &len_bytes(MAX_HEADER_BYTES + 1), huge).is_err()
        );
        assert!(SafetensorsHeader::header_len("t", &len_bytes(7)[..7], 100).is_err());
        // A tensor that ends exactly at the end of the file; one byte short is truncated.
        let h = header_json(
            r#""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}"#,
        );
        let exact = 8 + h.len() as u64 + 8;
        let parsed = SafetensorsHeader::parse("t", &h, exact).expect("fits exactly");
        assert_eq!(parsed.data_start, 8 + h.len() as u64);
        let (e, _) = parsed
            .tensor("t", "e", &[0])
            .expect("an empty tensor is fine");
        assert_eq!((e.start, e.end), (8, 8));
        let (a, _) = parsed.tensor("t", "a", &[2]).expect("tensor a");
        assert_eq!((a.start, a.end), (0, 8));
        assert!(parsed.tensor("t", "a", &[1]).is_err(), "shape differs");
        assert!(parsed.tensor("t", "b", &[2]).is_err(), "no such tensor");
        assert!(SafetensorsHeader::parse("t", &h, exact - 1).is_err());
        // f16 and bf16 take 2 bytes per value, f32 4; other dtypes are refused.
        for (dtype, bytes, ok) in [
            ("F16", 4, true),
            ("BF16", 4, true),
            ("F16", 8, false),
            ("I32", 8, false),
        ] {
            let h = header_json(&format!(
                r#""a":{{"dtype":"{dtype}","shape":[2],"data_offsets":[0,{bytes}]}}"#
            ));
            let parsed = SafetensorsHeader::parse("t", &h, 1000).expect("parses");
            assert_eq!(parsed.tensor("t", "a", &[2]).is_ok(), ok, "{dtype} {bytes}");
        }
        // In file order: by start offset, whatever the JSON order.
        let h = header_json(
            r#""z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}"#,
        );
        let parsed = SafetensorsHeader::parse("t", &h, 1000).expect("parses");
        let order: Vec<&str> = parsed.in_file_order().iter().map(|(n, _)| *n).collect();
        assert_eq!(order, ["z", "a"]);
    }

    #[test]
    fn malformed_entries_are_errors() {
        for entries in [
            r#""a":{"shape":[1],"data_offsets":[0,4]}"#,
            r#""a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}"#,
            r#""a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}"#,
            r#""a":{"dtype":"F32","shape":[1],"data_offsets":[4]}"#,
            r#""a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}"#,
        ] {
            assert!(
                SafetensorsHeader::parse("t", &header_json(entries), 1000).is_err(),
                "{entries}"
            );
        }
        assert!(SafetensorsHeader::parse("t", b"[1,2]", 1000).is_err());
        assert!(SafetensorsHeader::parse("t", b"\xff", 1000).is_err());
    }

    /// `check` walks every tensor the config names: a complete header passes, and a missing
    /// tensor or a wrong shape is an error naming the tensor.
    #[test]
    fn check_requires_every_tensor_of_the_config() {
        let cfg = Config {
            vocab_size: 8,
            hidden_dim: 8,
            n_heads: 2,
            cond_dim: 4,
            n_layers: 1,
            ..Config::default()
        };
        let specs = crate::checkpoint::hf_tensor_specs(&cfg);
        let header = |skip: Option<usize>, bad_shape: Option<usize>| {
            let (mut entries, mut offset) = (Vec::new(), 0usize);
            for (i, (name, shape)) in specs.iter().enumerate() {
                if skip == Some(i) {
                    continue;
                }
                let mut shape = shape.clone();
                if bad_shape == Some(i) {
                    shape.push(2);
                }
                let bytes = 4 * shape.iter().product::<usize>();
                entries.push(format!(
                    r#""{name}":{{"dtype":"F32","shape":{shape:?},"data_offsets":[{offset},{}]}}"#,
                    offset + bytes
                ));
                offset += bytes;
            }
            let h = header_json(&entries.join(","));
            let len = 8 + h.len() as u64 + offset as u64;
            SafetensorsHeader::parse("t", &h, len).expect("parses")
        };
        header(None, None).check("t", &cfg).expect("complete");
        let last = specs.len() - 1;
        for i in [0, last] {
            let err = header(Some(i), None).check("t", &cfg).expect_err("missing");
            assert!(err.to_string().contains(&specs[i].0), "{err}");
            let err = header(None, Some(i)).check("t", &cfg).expect_err("shape");
            assert!(err.to_string().contains(&specs[i].0), "{err}");
        }
    }

    /// Names as safetensors spells them (errors quote them), and each dtype's decoding.
    #[test]
    fn dtype_names_and_decoding() {
        for dtype in [
            CheckpointDtype::F32,
            CheckpointDtype::F16,
            CheckpointDtype::BF16,
        ] {
            assert_eq!(CheckpointDtype::parse(dtype.name()), Some(dtype));
        }
        assert_eq!(CheckpointDtype::BF16.name(), "BF16");
        // 1.0, -2.0 and 1.5 in each format, little-endian.
        let want = [1.0f32, -2.0, 1.5];
        let f32s: Vec<u8> = want.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(CheckpointDtype::F32.decode(&f32s), want);
        let f16s = [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x3e];
        assert_eq!(CheckpointDtype::F16.decode(&f16s), want);
        let bf16s = [0x80, 0x3f, 0x00, 0xc0, 0xc0, 0x3f];
        assert_eq!(CheckpointDtype::BF16.decode(&bf16s), want);
    }
}
