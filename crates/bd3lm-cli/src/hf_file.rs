//! Reading a Hugging Face `model.safetensors` one tensor at a time (header parsed up front,
//! each tensor read with a seek), so a 679 MB checkpoint converts without being held in memory.

use crate::error::{CliError, CliResult};
use bd3lm::checkpoint::hf_tensor_specs;
use bd3lm::{Config, Error};
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// safetensors caps headers at 100 MB; anything bigger is not a safetensors file.
const MAX_HEADER_BYTES: u64 = 100_000_000;

struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

pub struct HfFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    len: u64,
    tensors: HashMap<String, TensorInfo>,
}

impl HfFile {
    pub fn open(path: &Path) -> CliResult<HfFile> {
        let mut file = File::open(path).map_err(|e| CliError::io(path, e))?;
        let len = file.metadata().map_err(|e| CliError::io(path, e))?.len();
        let bad = |m: String| CliError::io(path, format!("not a valid safetensors file: {m}"));
        if len < 8 {
            return Err(bad(format!(
                "{len} bytes is shorter than the 8-byte header length (truncated?)"
            )));
        }
        let mut n = [0u8; 8];
        file.read_exact(&mut n).map_err(|e| CliError::io(path, e))?;
        let header_len = u64::from_le_bytes(n);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > len {
            return Err(bad(format!(
                "header length {header_len} does not fit the {len}-byte file (truncated?)"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)
            .map_err(|e| CliError::io(path, e))?;
        let header: Value =
            serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
        let entries = header
            .as_object()
            .ok_or_else(|| bad("header is not a JSON object".into()))?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::new();
        for (name, entry) in entries {
            if name == "__metadata__" {
                continue;
            }
            let field = |f: &str| {
                entry
                    .get(f)
                    .ok_or_else(|| bad(format!("tensor `{name}` has no `{f}`")))
            };
            let dtype = field("dtype")?.as_str().unwrap_or_default().to_string();
            let numbers = |f: &str| -> CliResult<Vec<u64>> {
                field(f)?
                    .as_array()
                    .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
                    .ok_or_else(|| bad(format!("tensor `{name}`: `{f}` is not a list of integers")))
            };
            let shape: Vec<usize> = numbers("shape")?.into_iter().map(|x| x as usize).collect();
            let offsets = numbers("data_offsets")?;
            let [start, end] = offsets[..] else {
                return Err(bad(format!(
                    "tensor `{name}`: `data_offsets` needs two entries"
                )));
            };
            if start > end || data_start + end > len {
                return Err(bad(format!(
                    "tensor `{name}` ends at byte {} but the file has {len} bytes (truncated?)",
                    data_start + end
                )));
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
        Ok(HfFile {
            path: path.to_path_buf(),
            file,
            data_start,
            len,
            tensors,
        })
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    fn file_name(&self) -> String {
        self.path.display().to_string()
    }

    /// Checks names, shapes and dtypes of every tensor of the config before any work starts.
    pub fn check(&self, cfg: &Config) -> CliResult<()> {
        for (name, shape) in hf_tensor_specs(cfg) {
            self.info(&name, &shape)
                .map_err(|e| CliError::core("", e))?;
        }
        Ok(())
    }

    fn info(&self, name: &str, shape: &[usize]) -> bd3lm::Result<&TensorInfo> {
        let file = self.file_name();
        let info = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            file: file.clone(),
            name: name.to_string(),
        })?;
        if info.shape != shape {
            return Err(Error::TensorShape {
                file,
                name: name.to_string(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        if info.dtype != "F32" {
            return Err(Error::TensorDtype {
                file,
                name: name.to_string(),
                expected: "F32".into(),
                found: info.dtype.clone(),
            });
        }
        let elements: usize = shape.iter().product();
        if info.end - info.start != 4 * elements as u64 {
            return Err(Error::Safetensors {
                file,
                message: format!(
                    "tensor `{name}` has {} data bytes for {elements} f32 values",
                    info.end - info.start
                ),
            });
        }
        Ok(info)
    }

    /// Reads one f32 tensor after checking its dtype and shape.
    pub fn read_f32(&mut self, name: &str, shape: &[usize]) -> bd3lm::Result<Vec<f32>> {
        let (start, end) = {
            let info = self.info(name, shape)?;
            (info.start, info.end)
        };
        let mut values = vec![0f32; ((end - start) / 4) as usize];
        let file = self.file_name();
        self.file
            .seek(SeekFrom::Start(self.data_start + start))
            .and_then(|_| self.file.read_exact(bytemuck::cast_slice_mut(&mut values)))
            .map_err(|e| Error::io(file, format!("reading tensor `{name}`: {e}")))?;
        if cfg!(target_endian = "big") {
            values
                .iter_mut()
                .for_each(|x| *x = f32::from_bits(x.to_bits().swap_bytes()));
        }
        Ok(values)
    }
}
