//! HF checkpoint tensors (spec §3) → the canonical tensors of [`Weights`] and packages, one
//! tensor at a time, so a converter can stream a 679 MB checkpoint with little memory: the
//! constant conditioning vector and adaLN outputs are computed on the way (spec §4.2) and the
//! adaLN / timestep-MLP weights themselves are dropped.

use crate::checkpoint::{conditioning_vector, hf_tensors};
use crate::config::{Config, FREQUENCY_EMBEDDING_SIZE};
use crate::error::Result;
use crate::package::{SchemePlan, TensorPiece, WeightsBuilder};
use crate::quant::{Matrix, Q4Fit, Scheme};
use crate::weights::Weights;

/// A canonical tensor as produced by the conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum Canonical {
    Vector(Vec<f32>),
    /// An f32 matrix (re-encoded later by the caller's plan).
    Matrix(Matrix),
}

/// Which part of the model a canonical matrix belongs to (picks its scheme in a plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixRole {
    Embedding,
    Transformer,
    LmHead,
}

pub fn matrix_role(name: &str) -> MatrixRole {
    match name {
        "embedding" => MatrixRole::Embedding,
        "lm_head.weight" => MatrixRole::LmHead,
        _ => MatrixRole::Transformer,
    }
}

impl SchemePlan {
    pub fn scheme_for(&self, role: MatrixRole) -> Scheme {
        match role {
            MatrixRole::Embedding => self.embedding,
            MatrixRole::Transformer => self.transformer,
            MatrixRole::LmHead => self.lm_head,
        }
    }
}

/// `y = W x + b` accumulated in f64 (the adaLN constants, as `checkpoint::load_hf` does).
fn affine(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    w.chunks_exact(x.len())
        .zip(b)
        .map(|(row, &bias)| {
            let dot: f64 = row.iter().zip(x).map(|(&a, &c)| a as f64 * c as f64).sum();
            (dot + bias as f64) as f32
        })
        .collect()
}

/// Reads the HF tensors through `read(name, shape)` (which checks dtype and shape) and calls
/// `visit(canonical_name, tensor)` in the canonical package order. `progress(hf_elements)`
/// reports how many checkpoint values were consumed so far.
pub fn for_each_canonical_tensor(
    cfg: &Config,
    mut read: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>,
    mut visit: impl FnMut(&str, Canonical) -> Result<()>,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let (v, h, c) = (cfg.vocab_size, cfg.hidden_dim, cfg.cond_dim);
    let f = FREQUENCY_EMBEDDING_SIZE;
    let mut done = 0u64;
    let mut get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let values = read(name, shape)?;
        done += values.len() as u64;
        progress(done);
        Ok(values)
    };
    let cond = conditioning_vector(
        &get("backbone.sigma_map.mlp.0.weight", &[c, f])?,
        &get("backbone.sigma_map.mlp.0.bias", &[c])?,
        &get("backbone.sigma_map.mlp.2.weight", &[c, c])?,
        &get("backbone.sigma_map.mlp.2.bias", &[c])?,
    );
    let inv_freq = get("backbone.rotary_emb.inv_freq", &[cfg.head_dim() / 2])?;
    visit("cond", Canonical::Vector(cond.clone()))?;
    visit("rotary.inv_freq", Canonical::Vector(inv_freq))?;
    let embedding = get("backbone.vocab_embed.embedding", &[v, h])?;
    visit(
        "embedding",
        Canonical::Matrix(Matrix::from_f32(v, h, embedding)),
    )?;
    for l in 0..cfg.n_layers {
        let p = format!("backbone.blocks.{l}");
        let q = format!("layers.{l}");
        let tensors: [(&str, &str, Vec<usize>); 8] = [
            ("norm1.weight", "norm1", vec![h]),
            ("attn_qkv.weight", "qkv", vec![3 * h, h]),
            ("attn_out.weight", "attn_out", vec![h, h]),
            ("norm2.weight", "norm2", vec![h]),
            ("mlp.0.weight", "mlp_in.weight", vec![4 * h, h]),
            ("mlp.0.bias", "mlp_in.bias", vec![4 * h]),
            ("mlp.2.weight", "mlp_out.weight", vec![h, 4 * h]),
            ("mlp.2.bias", "mlp_out.bias", vec![h]),
        ];
        for (hf, ours, shape) in tensors {
            let values = get(&format!("{p}.{hf}"), &shape)?;
            let tensor = match shape.as_slice() {
                [rows, cols] => Canonical::Matrix(Matrix::from_f32(*rows, *cols, values)),
                _ => Canonical::Vector(values),
            };
            visit(&format!("{q}.{ours}"), tensor)?;
        }
        let modulation = affine(
            &get(&format!("{p}.adaLN_modulation.weight"), &[6 * h, c])?,
            &get(&format!("{p}.adaLN_modulation.bias"), &[6 * h])?,
            &cond,
        );
        visit(&format!("{q}.modulation"), Canonical::Vector(modulation))?;
    }
    let final_norm = get("backbone.output_layer.norm_final.weight", &[h])?;
    visit("final.norm", Canonical::Vector(final_norm))?;
    let final_modulation = affine(
        &get("backbone.output_layer.adaLN_modulation.weight", &[2 * h, c])?,
        &get("backbone.output_layer.adaLN_modulation.bias", &[2 * h])?,
        &cond,
    );
    visit("final.modulation", Canonical::Vector(final_modulation))?;
    let head = get("backbone.output_layer.linear.weight", &[v, h])?;
    visit(
        "lm_head.weight",
        Canonical::Matrix(Matrix::from_f32(v, h, head)),
    )?;
    let head_bias = get("backbone.output_layer.linear.bias", &[v])?;
    visit("lm_head.bias", Canonical::Vector(head_bias))
}

/// Total values of an HF checkpoint (parameters and buffers), for progress bars.
pub fn hf_value_count(cfg: &Config) -> u64 {
    hf_tensors(cfg)
        .map(|(_, shape)| shape.iter().product::<usize>() as u64)
        .sum()
}

/// Re-encodes a matrix in `scheme` with the default q4 fit ([`Q4Fit::Range`], chosen by
/// measurement: docs/quantization.md), falling back to f16 then f32 when its rows do not suit
/// the scheme (e.g. a row length that is not a multiple of the group size).
pub fn encode_matrix(m: &Matrix, scheme: Scheme) -> Matrix {
    encode_matrix_with(m, scheme, Q4Fit::Range)
}

/// [`encode_matrix`] with a choice of q4 encoder.
pub fn encode_matrix_with(m: &Matrix, scheme: Scheme, fit: Q4Fit) -> Matrix {
    let scheme = [scheme, Scheme::F16, Scheme::F32]
        .into_iter()
        .find(|s| s.supports_cols(m.cols))
        .unwrap_or(Scheme::F32);
    if m.scheme() == Scheme::F32 {
        m.quantize_with(scheme, fit)
    } else {
        Matrix::from_f32(m.rows, m.cols, m.to_f32()).quantize_with(scheme, fit)
    }
}

/// Loads an HF checkpoint tensor by tensor into f32 [`Weights`].
pub fn hf_to_weights(
    cfg: &Config,
    read: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>,
    progress: impl FnMut(u64),
) -> Result<Weights> {
    let mut builder = WeightsBuilder::new(cfg.clone());
    let visit = |name: &str, tensor: Canonical| {
        let piece = match tensor {
            Canonical::Vector(v) => TensorPiece::Vector(v),
            Canonical::Matrix(m) => TensorPiece::Rows {
                start_row: 0,
                total_rows: m.rows,
                matrix: m,
            },
        };
        builder.put(name.to_string(), piece);
        Ok(())
    };
    for_each_canonical_tensor(cfg, read, visit, progress)?;
    builder.finish()
}

/// A reader over an in-memory HF safetensors buffer (tests, small models).
pub fn read_from_safetensors<'a>(
    file: &'a str,
    st: &'a safetensors::SafeTensors<'a>,
) -> impl FnMut(&str, &[usize]) -> Result<Vec<f32>> + 'a {
    move |name, shape| crate::checkpoint::read_f32(st, file, name, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{load_hf, parse_safetensors};
    use crate::package::{load_package, PackageInfo, PackageWriter, SpecialTokens};
    use crate::stream_convert::StreamingConverter;

    fn fixture(name: &str) -> (String, Vec<u8>) {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(name);
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        (
            config,
            std::fs::read(dir.join("model.safetensors")).unwrap(),
        )
    }

    #[test]
    fn streaming_load_equals_load_hf() {
        let (config, bytes) = fixture("tiny-v512-bs16");
        let cfg = Config::from_json_str(&config).unwrap();
        let st = parse_safetensors("model.safetensors", &bytes).unwrap();
        let mut seen = 0;
        let streamed = hf_to_weights(&cfg, read_from_safetensors("model.safetensors", &st), |n| {
            seen = n
        })
        .unwrap();
        assert_eq!(streamed, load_hf(&config, &bytes).unwrap());
        // Every value but the two unused eps scalars was read.
        assert_eq!(seen + 2, hf_value_count(&cfg));
    }

    #[test]
    fn streaming_package_equals_in_memory_package() {
        let (config, bytes) = fixture("tiny-v512-bs4");
        let cfg = Config::from_json_str(&config).unwrap();
        let special = SpecialTokens {
            bos: 510,
            eos: 510,
            mask: 511,
        };
        let plan = SchemePlan {
            embedding: Scheme::Q8,
            transformer: Scheme::Q4,
            lm_head: Scheme::F16,
        };
        let mut files = Vec::new();
        let writer = PackageWriter::new(50_000, |name: &str, b: Vec<u8>| {
            files.push((name.to_string(), b));
            Ok(())
        });
        let info = PackageInfo {
            name: "t".into(),
            quantization: "mixed".into(),
            config: cfg.clone(),
            special_tokens: special.clone(),
            source: serde_json::Value::Null,
        };
        let mut converter =
            StreamingConverter::new(&cfg, plan, "model.safetensors", bytes.len() as u64, writer);
        // Odd chunks, so values and rows are split between pushes.
        for chunk in bytes.chunks(7_777) {
            converter.push(chunk).unwrap();
        }
        let manifest = converter.finish(info, b"{}").unwrap();
        assert!(manifest.files.len() > 1, "small shards: several of them");
        let text = serde_json::to_string(&manifest).unwrap();
        let (_, loaded, _) = load_package(&text, |f| {
            Ok(files
                .iter()
                .find(|(n, _)| n == f)
                .map(|(_, b)| b.clone())
                .unwrap())
        })
        .unwrap();
        let expected = crate::package::quantize_weights(&load_hf(&config, &bytes).unwrap(), plan);
        assert_eq!(loaded, expected);
        assert_eq!(loaded.schemes(), (Scheme::Q8, Scheme::Q4, Scheme::F16));
    }
}
