//! Golden-fixture directories (`config.json`, `model.safetensors`, `golden.safetensors`,
//! `notes.json`; see `tests/fixtures/README.md`), loaded from bytes so the same code runs
//! natively and in the browser.

use crate::checkpoint::{self, parse_safetensors};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::weights::Weights;
use safetensors::Dtype;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub enum GoldenData {
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

#[derive(Debug, Clone)]
pub struct GoldenTensor {
    pub shape: Vec<usize>,
    pub data: GoldenData,
}

impl GoldenTensor {
    pub fn as_f64(&self) -> Vec<f64> {
        match &self.data {
            GoldenData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            GoldenData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            GoldenData::F64(v) => v.clone(),
        }
    }

    pub fn as_i64(&self) -> Vec<i64> {
        match &self.data {
            GoldenData::I64(v) => v.clone(),
            GoldenData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            GoldenData::F64(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    pub fn as_f32(&self) -> Vec<f32> {
        self.as_f64().into_iter().map(|x| x as f32).collect()
    }
}

/// One sampler trace's settings (`<trace>_cfg` in notes.json).
#[derive(Debug, Clone)]
pub struct TraceConfig {
    pub name: String,
    pub first_hitting: bool,
    pub steps: usize,
    pub nucleus_p: f64,
    pub seqlen: usize,
    pub seed: u64,
}

/// The files of a fixture case directory.
pub const FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "golden.safetensors",
    "notes.json",
];

/// Whether `dir` holds a fixture case, with an error naming what is missing.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_dir(dir: &std::path::Path) -> Result<()> {
    let missing: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if dir.is_dir() && missing.is_empty() {
        return Ok(());
    }
    let what = if dir.is_dir() {
        format!("missing {}", missing.join(", "))
    } else {
        format!("expected a directory with {}", FILES.join(", "))
    };
    Err(Error::InvalidArgument(format!(
        "{}: not a fixture directory ({what})",
        dir.display()
    )))
}

/// Every fixture case under `root` (a directory per case), sorted by name. The one place
/// that finds cases: the tests, the CLI and the browser tests' fixture server
/// (`scripts/serve-fixtures.py`, same rule: a directory with `golden.safetensors`) agree.
#[cfg(not(target_arch = "wasm32"))]
pub fn case_dirs(root: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::Fixture {
        file: root.display().to_string(),
        message: e.to_string(),
    })?;
    let mut dirs: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.safetensors").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(Error::Fixture {
            file: root.display().to_string(),
            message: "no fixture case (a directory with golden.safetensors)".into(),
        });
    }
    Ok(dirs)
}

pub struct Fixture {
    pub name: String,
    pub config: Config,
    pub weights: Weights,
    pub golden: BTreeMap<String, GoldenTensor>,
    pub traces: Vec<TraceConfig>,
}

impl Fixture {
    pub fn from_bytes(
        name: &str,
        config_json: &str,
        model: &[u8],
        golden: &[u8],
        notes_json: &str,
    ) -> Result<Fixture> {
        let weights = checkpoint::load_hf(config_json, model)?;
        let golden = read_golden(golden)?;
        let traces = read_notes(notes_json)?;
        Ok(Fixture {
            name: name.to_string(),
            config: weights.config.clone(),
            weights,
            golden,
            traces,
        })
    }

    /// Loads a fixture directory; anything else is an error that says what is missing.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Fixture> {
        check_dir(dir)?;
        let read = |f: &str| {
            std::fs::read(dir.join(f)).map_err(|e| Error::Fixture {
            file: dir.join(f).display().to_string(),
            message: format!("{e} (a fixture directory holds config.json, model.safetensors, golden.safetensors and notes.json)"),
        })
        };
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| dir.display().to_string());
        let config = String::from_utf8_lossy(&read("config.json")?).to_string();
        let notes = String::from_utf8_lossy(&read("notes.json")?).to_string();
        Fixture::from_bytes(
            &name,
            &config,
            &read("model.safetensors")?,
            &read("golden.safetensors")?,
            &notes,
        )
    }

    pub fn tensor(&self, name: &str) -> Result<&GoldenTensor> {
        self.golden.get(name).ok_or_else(|| Error::Fixture {
            file: format!("{}/golden.safetensors", self.name),
            message: format!("tensor `{name}` is missing"),
        })
    }

    pub fn get(&self, name: &str) -> Option<&GoldenTensor> {
        self.golden.get(name)
    }

    /// BOS of fixture models: `V - 2` (they ship no tokenizer; fixtures README).
    pub fn bos(&self) -> u32 {
        (self.config.vocab_size - 2) as u32
    }
}

/// Every tensor of a `golden.safetensors` (i64, f32 or f64).
pub fn read_golden(bytes: &[u8]) -> Result<BTreeMap<String, GoldenTensor>> {
    let st = parse_safetensors("golden.safetensors", bytes)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::I64 => GoldenData::I64(
                raw.chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            Dtype::F32 => GoldenData::F32(checkpoint::f32_from_le(raw)),
            Dtype::F64 => GoldenData::F64(
                raw.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            other => {
                return Err(Error::Fixture {
                    file: "golden.safetensors".into(),
                    message: format!("tensor `{name}` has unsupported dtype {other:?}"),
                })
            }
        };
        out.insert(
            name,
            GoldenTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// The sampler traces of a `notes.json`.
pub fn read_notes(notes_json: &str) -> Result<Vec<TraceConfig>> {
    let notes: Value = serde_json::from_str(notes_json).map_err(|e| Error::Fixture {
        file: "notes.json".into(),
        message: format!("not valid JSON: {e}"),
    })?;
    read_traces(&notes)
}

fn read_traces(notes: &Value) -> Result<Vec<TraceConfig>> {
    let obj = notes.as_object().ok_or_else(|| Error::Fixture {
        file: "notes.json".into(),
        message: "expected an object".into(),
    })?;
    let bad = |key: &str, what: &str| Error::Fixture {
        file: "notes.json".into(),
        message: format!("`{key}`: {what}"),
    };
    let mut traces = Vec::new();
    for (key, cfg) in obj {
        let Some(name) = key.strip_suffix("_cfg") else {
            continue;
        };
        let field = |f: &str| {
            cfg.get(f)
                .ok_or_else(|| bad(key, &format!("missing `{f}`")))
        };
        let sampler = field("sampler")?
            .as_str()
            .ok_or_else(|| bad(key, "`sampler` is not a string"))?;
        let first_hitting = match sampler {
            "first_hitting" => true,
            "ddpm" => false,
            other => return Err(bad(key, &format!("unknown sampler `{other}`"))),
        };
        let uint = |f: &str| -> Result<u64> {
            field(f)?
                .as_u64()
                .ok_or_else(|| bad(key, &format!("`{f}` is not an integer")))
        };
        traces.push(TraceConfig {
            name: name.to_string(),
            first_hitting,
            steps: uint("T")? as usize,
            nucleus_p: field("nucleus_p")?
                .as_f64()
                .ok_or_else(|| bad(key, "`nucleus_p` is not a number"))?,
            seqlen: uint("seqlen")? as usize,
            seed: uint("seed")?,
        });
    }
    Ok(traces)
}
