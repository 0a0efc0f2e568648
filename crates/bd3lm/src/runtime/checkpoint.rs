//! Loading a Hugging Face BD3-LM checkpoint (`config.json` + `model.safetensors`, spec §1, §3)
//! into [`Weights`], with a typed error for every way the files can be wrong.

use crate::config::{Config, FREQUENCY_EMBEDDING_SIZE};
use crate::error::{Error, Result};
use crate::hf_file::CheckpointDtype;
use crate::quant::Matrix;
use crate::weights::{LayerWeights, Weights};
use safetensors::{Dtype, SafeTensors};

/// Every tensor of an HF checkpoint with its shape (spec §3), in a fixed order.
pub fn hf_tensor_specs(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    hf_tensors(cfg).collect()
}

/// [`hf_tensor_specs`] one at a time: checks walk it without holding the whole list, so a
/// config's layer count costs no memory before a file proves it holds those layers.
pub fn hf_tensors(cfg: &Config) -> impl Iterator<Item = (String, Vec<usize>)> {
    let (v, h, c, d) = (cfg.vocab_size, cfg.hidden_dim, cfg.cond_dim, cfg.head_dim());
    let f = FREQUENCY_EMBEDDING_SIZE;
    let head = [
        ("backbone.vocab_embed.embedding".to_string(), vec![v, h]),
        ("backbone.sigma_map.mlp.0.weight".into(), vec![c, f]),
        ("backbone.sigma_map.mlp.0.bias".into(), vec![c]),
        ("backbone.sigma_map.mlp.2.weight".into(), vec![c, c]),
        ("backbone.sigma_map.mlp.2.bias".into(), vec![c]),
        ("backbone.rotary_emb.inv_freq".into(), vec![d / 2]),
    ];
    let layers = (0..cfg.n_layers).flat_map(move |l| {
        let p = format!("backbone.blocks.{l}");
        [
            (format!("{p}.norm1.weight"), vec![h]),
            (format!("{p}.attn_qkv.weight"), vec![3 * h, h]),
            (format!("{p}.attn_out.weight"), vec![h, h]),
            (format!("{p}.norm2.weight"), vec![h]),
            (format!("{p}.mlp.0.weight"), vec![4 * h, h]),
            (format!("{p}.mlp.0.bias"), vec![4 * h]),
            (format!("{p}.mlp.2.weight"), vec![h, 4 * h]),
            (format!("{p}.mlp.2.bias"), vec![h]),
            (format!("{p}.adaLN_modulation.weight"), vec![6 * h, c]),
            (format!("{p}.adaLN_modulation.bias"), vec![6 * h]),
        ]
    });
    let tail = [
        (
            "backbone.output_layer.norm_final.weight".to_string(),
            vec![h],
        ),
        ("backbone.output_layer.linear.weight".into(), vec![v, h]),
        ("backbone.output_layer.linear.bias".into(), vec![v]),
        (
            "backbone.output_layer.adaLN_modulation.weight".into(),
            vec![2 * h, c],
        ),
        (
            "backbone.output_layer.adaLN_modulation.bias".into(),
            vec![2 * h],
        ),
        ("sampling_eps_min".into(), vec![]),
        ("sampling_eps_max".into(), vec![]),
    ];
    head.into_iter().chain(layers).chain(tail)
}

/// Parses a safetensors buffer, turning the crate's errors into messages about the file.
pub fn parse_safetensors<'a>(file: &str, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        let why = match e {
            safetensors::SafeTensorError::MetadataIncompleteBuffer
            | safetensors::SafeTensorError::InvalidOffset(_)
            | safetensors::SafeTensorError::HeaderTooSmall
            | safetensors::SafeTensorError::InvalidHeaderLength => {
                format!("{e} (the file is truncated or corrupt)")
            }
            other => other.to_string(),
        };
        Error::Safetensors {
            file: file.to_string(),
            message: why,
        }
    })
}

/// The checkpoint dtype of a safetensors tensor (f32, f16 or bf16), or the error naming it.
fn checkpoint_dtype(file: &str, name: &str, dtype: Dtype) -> Result<CheckpointDtype> {
    match dtype {
        Dtype::F32 => Ok(CheckpointDtype::F32),
        Dtype::F16 => Ok(CheckpointDtype::F16),
        Dtype::BF16 => Ok(CheckpointDtype::BF16),
        other => Err(Error::TensorDtype {
            file: file.to_string(),
            name: name.to_string(),
            expected: CheckpointDtype::EXPECTED.into(),
            found: format!("{other:?}"),
        }),
    }
}

/// Reads a tensor as f32 (stored as f32, f16 or bf16) after checking its dtype and shape.
pub fn read_f32(st: &SafeTensors, file: &str, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let view = st.tensor(name).map_err(|_| Error::MissingTensor {
        file: file.to_string(),
        name: name.to_string(),
    })?;
    if view.shape() != shape {
        return Err(Error::TensorShape {
            file: file.to_string(),
            name: name.to_string(),
            expected: shape.to_vec(),
            found: view.shape().to_vec(),
        });
    }
    let dtype = checkpoint_dtype(file, name, view.dtype())?;
    Ok(dtype.decode(view.data()))
}

pub fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Checks names, shapes and dtypes of every tensor of the spec against the file.
pub fn check_hf_tensors(cfg: &Config, file: &str, st: &SafeTensors) -> Result<()> {
    for (name, shape) in hf_tensors(cfg) {
        let view = st.tensor(&name).map_err(|_| Error::MissingTensor {
            file: file.to_string(),
            name: name.clone(),
        })?;
        if view.shape() != shape.as_slice() {
            return Err(Error::TensorShape {
                file: file.to_string(),
                name,
                expected: shape,
                found: view.shape().to_vec(),
            });
        }
        checkpoint_dtype(file, &name, view.dtype())?;
    }
    Ok(())
}

/// `e^x` with IEEE basic operations only (Cody-Waite reduction, Taylor series), so every
/// platform gets the same bits: native `expf` (glibc) and the wasm build's differ in the last
/// bit now and then, which would make the page's converted package differ from
/// `bd3lm quantize`'s. Relative error below 1e-15 (tested against `f64::exp`).
pub fn exp_portable(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    if x.is_nan() {
        return x;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    if x < -740.0 {
        return 0.0;
    }
    let k = (x / std::f64::consts::LN_2).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // |r| <= 0.347: 18 terms of the series are far below f64 precision.
    let mut sum = 1.0;
    for i in (1..=18).rev() {
        sum = 1.0 + sum * r / i as f64;
    }
    // 2^k, in two exact steps so subnormal results stay exact too.
    let k = k as i32;
    let (k1, k2) = (k / 2, k - k / 2);
    let pow2 = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    sum * pow2(k1) * pow2(k2)
}

fn silu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + exp_portable(-x))) as f32
}

/// `y = W x + b` for a `[rows, cols]` weight, accumulated in f64 and rounded once.
fn affine(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    let cols = x.len();
    w.chunks_exact(cols)
        .zip(b)
        .map(|(row, &bias)| {
            let dot: f64 = row.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
            (dot + bias as f64) as f32
        })
        .collect()
}

/// `c = SiLU(W2 SiLU(W1 temb(0) + b1) + b2)` with `temb(0) = [1]*128 ++ [0]*128` (spec §4.2).
pub fn conditioning_vector(w1: &[f32], b1: &[f32], w2: &[f32], b2: &[f32]) -> Vec<f32> {
    let half = FREQUENCY_EMBEDDING_SIZE / 2;
    let temb: Vec<f32> = (0..FREQUENCY_EMBEDDING_SIZE)
        .map(|i| if i < half { 1.0 } else { 0.0 })
        .collect();
    let h: Vec<f32> = affine(w1, b1, &temb).into_iter().map(silu).collect();
    affine(w2, b2, &h).into_iter().map(silu).collect()
}

/// Loads an HF checkpoint from its `config.json` text and `model.safetensors` bytes.
pub fn load_hf(config_json: &str, safetensors_bytes: &[u8]) -> Result<Weights> {
    let config = Config::from_json_str(config_json)?;
    let file = "model.safetensors";
    let st = parse_safetensors(file, safetensors_bytes)?;
    check_hf_tensors(&config, file, &st)?;
    let (v, h, c) = (config.vocab_size, config.hidden_dim, config.cond_dim);
    let get = |name: &str, shape: &[usize]| read_f32(&st, file, name, shape);
    let f = FREQUENCY_EMBEDDING_SIZE;
    let cond = conditioning_vector(
        &get("backbone.sigma_map.mlp.0.weight", &[c, f])?,
        &get("backbone.sigma_map.mlp.0.bias", &[c])?,
        &get("backbone.sigma_map.mlp.2.weight", &[c, c])?,
        &get("backbone.sigma_map.mlp.2.bias", &[c])?,
    );
    let mut layers = Vec::with_capacity(config.n_layers);
    for l in 0..config.n_layers {
        let p = format!("backbone.blocks.{l}");
        let modulation = affine(
            &get(&format!("{p}.adaLN_modulation.weight"), &[6 * h, c])?,
            &get(&format!("{p}.adaLN_modulation.bias"), &[6 * h])?,
            &cond,
        );
        layers.push(LayerWeights {
            norm1: get(&format!("{p}.norm1.weight"), &[h])?,
            qkv: Matrix::from_f32(3 * h, h, get(&format!("{p}.attn_qkv.weight"), &[3 * h, h])?),
            attn_out: Matrix::from_f32(h, h, get(&format!("{p}.attn_out.weight"), &[h, h])?),
            norm2: get(&format!("{p}.norm2.weight"), &[h])?,
            mlp_in: Matrix::from_f32(4 * h, h, get(&format!("{p}.mlp.0.weight"), &[4 * h, h])?),
            mlp_in_bias: get(&format!("{p}.mlp.0.bias"), &[4 * h])?,
            mlp_out: Matrix::from_f32(h, 4 * h, get(&format!("{p}.mlp.2.weight"), &[h, 4 * h])?),
            mlp_out_bias: get(&format!("{p}.mlp.2.bias"), &[h])?,
            modulation,
        });
    }
    let final_modulation = affine(
        &get("backbone.output_layer.adaLN_modulation.weight", &[2 * h, c])?,
        &get("backbone.output_layer.adaLN_modulation.bias", &[2 * h])?,
        &cond,
    );
    Ok(Weights {
        inv_freq: get("backbone.rotary_emb.inv_freq", &[config.head_dim() / 2])?,
        embedding: Matrix::from_f32(v, h, get("backbone.vocab_embed.embedding", &[v, h])?),
        layers,
        final_norm: get("backbone.output_layer.norm_final.weight", &[h])?,
        final_modulation,
        lm_head: Matrix::from_f32(v, h, get("backbone.output_layer.linear.weight", &[v, h])?),
        lm_head_bias: get("backbone.output_layer.linear.bias", &[v])?,
        cond,
        config,
    })
}

/// `1 / 10000^(2i/d)` computed as the reference does (f32 pow), for models without the buffer.
pub fn default_inv_freq(head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / head_dim as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn portable_exp_matches_exp() {
        let mut x = -740.0f64;
        while x < 709.0 {
            let (want, got) = (x.exp(), super::exp_portable(x));
            let rel = ((got - want) / want).abs();
            assert!(
                rel < 1e-14 || (want < 1e-300 && (got - want).abs() < 1e-310),
                "{x}: {got} vs {want}"
            );
            x += 0.173;
        }
        assert_eq!(super::exp_portable(0.0), 1.0);
        assert!(super::exp_portable(f64::NAN).is_nan());
    }
}
