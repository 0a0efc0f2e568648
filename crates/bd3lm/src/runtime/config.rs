//! `config.json` of a BD3-LM checkpoint (spec §1): every field of the released files, the class
//! defaults for missing keys, and a clear error naming the field for anything we cannot run.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// Largest `hidden_dim` and `cond_dim` a config may name.
pub const MAX_HIDDEN_DIM: usize = 1 << 16;
/// Largest `n_blocks`.
pub const MAX_LAYERS: usize = 1024;
/// Largest `model_length`.
pub const MAX_MODEL_LENGTH: usize = 1 << 20;

/// Width of the sinusoidal timestep embedding fed to `sigma_map` (fixed by the reference).
pub const FREQUENCY_EMBEDDING_SIZE: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Model vocabulary: tokenizer size + 1 (the MASK id is `vocab_size - 1`).
    pub vocab_size: usize,
    pub hidden_dim: usize,
    pub cond_dim: usize,
    /// Transformer layers (`n_blocks` in the reference).
    pub n_layers: usize,
    pub n_heads: usize,
    /// Context length and KV-cache capacity.
    pub model_length: usize,
    pub block_size: usize,
    pub adaln: bool,
    pub causal: bool,
    pub cross_attn: bool,
    pub time_conditioning: bool,
    pub var_min: bool,
    pub dropout: f64,
    pub sampling_eps_min: f64,
    pub sampling_eps_max: f64,
    pub attn_backend: String,
    pub model_type: String,
}

impl Default for Config {
    /// The reference `BD3LMConfig` class defaults (used for keys missing from a file).
    fn default() -> Self {
        Config {
            vocab_size: 50258,
            hidden_dim: 768,
            cond_dim: 129,
            n_layers: 12,
            n_heads: 12,
            model_length: 1024,
            block_size: 1,
            adaln: true,
            causal: false,
            cross_attn: true,
            time_conditioning: false,
            var_min: true,
            dropout: 0.1,
            sampling_eps_min: 1e-3,
            sampling_eps_max: 0.999,
            attn_backend: "flex".to_string(),
            model_type: "bd3lm".to_string(),
        }
    }
}

impl Config {
    /// The released `kuleshov-group/bd3lm-owt-block_size{B}` shapes.
    pub fn released(block_size: usize) -> Self {
        Config {
            cond_dim: 128,
            block_size,
            attn_backend: "sdpa".to_string(),
            ..Config::default()
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_dim / self.n_heads
    }

    pub fn mlp_dim(&self) -> usize {
        4 * self.hidden_dim
    }

    /// MASK = `vocab_size - 1`; never a tokenizer token.
    pub fn mask_id(&self) -> u32 {
        (self.vocab_size - 1) as u32
    }

    /// Parameters of the HF checkpoint (spec §3), buffers excluded. Computed in u64 (exact for
    /// every config that validates); saturates where usize is 32 bits.
    pub fn parameter_count(&self) -> usize {
        let (v, h, c, l) = (
            self.vocab_size as u64,
            self.hidden_dim as u64,
            self.cond_dim as u64,
            self.n_layers as u64,
        );
        let f = FREQUENCY_EMBEDDING_SIZE as u64;
        let sigma_map = c * f + c + c * c + c;
        let layer =
            h + 3 * h * h + h * h + h + 4 * h * h + 4 * h + 4 * h * h + h + 6 * h * c + 6 * h;
        let output = h + v * h + v + 2 * h * c + 2 * h;
        usize::try_from(v * h + sigma_map + l * layer + output).unwrap_or(usize::MAX)
    }

    pub fn from_json_str(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Config {
            field: "<file>".into(),
            message: format!("not valid JSON: {e}"),
        })?;
        let map = value.as_object().ok_or_else(|| Error::Config {
            field: "<file>".into(),
            message: "expected a JSON object".into(),
        })?;
        Self::from_map(map)
    }

    pub fn from_map(map: &Map<String, Value>) -> Result<Self> {
        let d = Config::default();
        let cfg = Config {
            vocab_size: get_usize(map, "vocab_size", d.vocab_size)?,
            hidden_dim: get_usize(map, "hidden_dim", d.hidden_dim)?,
            cond_dim: get_usize(map, "cond_dim", d.cond_dim)?,
            n_layers: get_usize(map, "n_blocks", d.n_layers)?,
            n_heads: get_usize(map, "n_heads", d.n_heads)?,
            model_length: get_usize(map, "model_length", d.model_length)?,
            block_size: get_usize(map, "block_size", d.block_size)?,
            adaln: get_bool(map, "adaln", d.adaln)?,
            causal: get_bool(map, "causal", d.causal)?,
            cross_attn: get_bool(map, "cross_attn", d.cross_attn)?,
            time_conditioning: get_bool(map, "time_conditioning", d.time_conditioning)?,
            var_min: get_bool(map, "var_min", d.var_min)?,
            dropout: get_f64(map, "dropout", d.dropout)?,
            sampling_eps_min: get_f64(map, "sampling_eps_min", d.sampling_eps_min)?,
            sampling_eps_max: get_f64(map, "sampling_eps_max", d.sampling_eps_max)?,
            attn_backend: get_string(map, "attn_backend", &d.attn_backend)?,
            model_type: get_string(map, "model_type", &d.model_type)?,
        };
        match map.get("torch_dtype") {
            None | Some(Value::Null) => {}
            // The weights are read as f32 whatever they are stored in (hf_file::CheckpointDtype).
            Some(Value::String(s)) if matches!(s.as_str(), "float32" | "float16" | "bfloat16") => {}
            Some(Value::String(s)) => {
                return Err(Error::config(
                    "torch_dtype",
                    format!("`{s}` checkpoints are not supported (float32, float16 or bfloat16)"),
                ))
            }
            Some(other) => {
                return Err(Error::config(
                    "torch_dtype",
                    format!("expected a string, found {other}"),
                ))
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that this is a model the engine can run, naming the offending field.
    pub fn validate(&self) -> Result<()> {
        if self.model_type != "bd3lm" {
            return Err(Error::config(
                "model_type",
                format!(
                    "`{}` is not a BD3-LM checkpoint (expected \"bd3lm\")",
                    self.model_type
                ),
            ));
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_dim", self.hidden_dim),
            ("cond_dim", self.cond_dim),
            ("n_blocks", self.n_layers),
            ("n_heads", self.n_heads),
            ("model_length", self.model_length),
            ("block_size", self.block_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        // Far beyond any BD3-LM, and small enough that every size derived from a config
        // (parameters, KV cache bytes) is exact in u64: a file cannot claim a model whose
        // arithmetic overflows (found by fuzzing, docs/reliability.md).
        let limits = [
            ("hidden_dim", self.hidden_dim, MAX_HIDDEN_DIM),
            ("cond_dim", self.cond_dim, MAX_HIDDEN_DIM),
            ("n_blocks", self.n_layers, MAX_LAYERS),
            ("model_length", self.model_length, MAX_MODEL_LENGTH),
        ];
        for (field, value, max) in limits {
            if value > max {
                return Err(Error::config(
                    field,
                    format!("{value} is larger than the largest supported ({max})"),
                ));
            }
        }
        if self.vocab_size < 3 || self.vocab_size > (1 << 24) {
            return Err(Error::config(
                "vocab_size",
                format!("{} is out of range 3..=16777216", self.vocab_size),
            ));
        }
        if !self.hidden_dim.is_multiple_of(self.n_heads) {
            return Err(Error::config(
                "n_heads",
                format!(
                    "hidden_dim {} is not divisible by n_heads {}",
                    self.hidden_dim, self.n_heads
                ),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(Error::config(
                "n_heads",
                format!(
                    "head dim {} must be even for rotary embeddings",
                    self.head_dim()
                ),
            ));
        }
        if self.block_size > self.model_length {
            return Err(Error::config(
                "block_size",
                format!(
                    "{} is larger than model_length {}",
                    self.block_size, self.model_length
                ),
            ));
        }
        if !self.model_length.is_multiple_of(self.block_size) {
            return Err(Error::BlockSizeMismatch {
                model_length: self.model_length,
                block_size: self.block_size,
            });
        }
        if !self.adaln {
            return Err(Error::config(
                "adaln",
                "false is not supported (every BD3-LM checkpoint uses adaLN)",
            ));
        }
        if self.causal {
            return Err(Error::config(
                "causal",
                "true describes an autoregressive model, not block diffusion",
            ));
        }
        if !self.cross_attn {
            return Err(Error::config(
                "cross_attn",
                "false is not supported (BD3-LM needs the block-diffusion masks)",
            ));
        }
        if self.time_conditioning {
            return Err(Error::config(
                "time_conditioning",
                "true is not supported: the engine precomputes the constant adaLN vectors of time_conditioning=false models",
            ));
        }
        Ok(())
    }

    /// The config as HF-style JSON (what a package manifest embeds).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "model_type": self.model_type,
            "architectures": ["BD3LM"],
            "vocab_size": self.vocab_size,
            "hidden_dim": self.hidden_dim,
            "cond_dim": self.cond_dim,
            "n_blocks": self.n_layers,
            "n_heads": self.n_heads,
            "model_length": self.model_length,
            "block_size": self.block_size,
            "adaln": self.adaln,
            "causal": self.causal,
            "cross_attn": self.cross_attn,
            "time_conditioning": self.time_conditioning,
            "var_min": self.var_min,
            "dropout": self.dropout,
            "sampling_eps_min": self.sampling_eps_min,
            "sampling_eps_max": self.sampling_eps_max,
            "attn_backend": self.attn_backend,
            "torch_dtype": "float32",
        })
    }
}

fn get_usize(map: &Map<String, Value>, field: &str, default: usize) -> Result<usize> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                Error::config(field, format!("expected a non-negative integer, found {v}"))
            }),
    }
}

fn get_bool(map: &Map<String, Value>, field: &str, default: bool) -> Result<bool> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| Error::config(field, format!("expected true or false, found {v}"))),
    }
}

fn get_f64(map: &Map<String, Value>, field: &str, default: f64) -> Result<f64> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| Error::config(field, format!("expected a number, found {v}"))),
    }
}

fn get_string(map: &Map<String, Value>, field: &str, default: &str) -> Result<String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(v) => v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::config(field, format!("expected a string, found {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_parameter_count_matches_spec() {
        let released = Config::released(16);
        assert_eq!(released.parameter_count(), 169_627_218);
        assert_eq!((released.block_size, released.cond_dim), (16, 128));
        assert_eq!(released.attn_backend, "sdpa");
    }

    #[test]
    fn missing_keys_take_class_defaults() {
        let cfg = Config::from_json_str(r#"{"model_type":"bd3lm","block_size":4,"cond_dim":128}"#)
            .unwrap();
        assert_eq!(cfg.vocab_size, 50258);
        assert!(cfg.adaln && !cfg.causal);
        assert_eq!(cfg.attn_backend, "flex");
    }

    #[test]
    fn errors_name_the_field() {
        let err = Config::from_json_str(r#"{"block_size":"four"}"#).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field, .. } if field == "block_size"),
            "{err}"
        );
        let err = Config::from_json_str(
            r#"{"n_heads":5,"hidden_dim":64,"block_size":4,"model_length":64}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Config { field, .. } if field == "n_heads"),
            "{err}"
        );
        let err =
            Config::from_json_str(r#"{"time_conditioning":true,"block_size":4}"#).unwrap_err();
        assert!(err.to_string().contains("time_conditioning"), "{err}");
        let err = Config::from_json_str("{not json").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = Config::from_json_str(r#"{"torch_dtype":"int8","block_size":4}"#).unwrap_err();
        assert!(err.to_string().contains("torch_dtype"), "{err}");
    }

    /// Every rule of `validate` at its boundary: the extreme accepted value passes, one step
    /// beyond fails naming its field.
    #[test]
    fn every_rule_holds_exactly_at_its_boundary() {
        let base = Config {
            vocab_size: 512,
            hidden_dim: 64,
            cond_dim: 32,
            n_layers: 2,
            n_heads: 4,
            model_length: 64,
            block_size: 4,
            ..Config::default()
        };
        let rejected_field = |c: Config| match c.validate() {
            Err(Error::Config { field, .. }) => field,
            other => panic!("{c:?}: expected a config error, got {other:?}"),
        };
        let with = |f: &dyn Fn(&mut Config)| {
            let mut c = base.clone();
            f(&mut c);
            c
        };
        assert!(base.validate().is_ok());
        type Edit = (&'static str, Box<dyn Fn(&mut Config, usize)>, usize);
        let limits: Vec<Edit> = vec![
            (
                "hidden_dim",
                Box::new(|c, v| c.hidden_dim = v),
                MAX_HIDDEN_DIM,
            ),
            ("cond_dim", Box::new(|c, v| c.cond_dim = v), MAX_HIDDEN_DIM),
            ("n_blocks", Box::new(|c, v| c.n_layers = v), MAX_LAYERS),
            (
                "model_length",
                Box::new(|c, v| c.model_length = v),
                MAX_MODEL_LENGTH,
            ),
            ("vocab_size", Box::new(|c, v| c.vocab_size = v), 1 << 24),
        ];
        for (field, set, max) in &limits {
            assert!(
                with(&|c| set(c, *max)).validate().is_ok(),
                "{field} = {max}"
            );
            assert_eq!(rejected_field(with(&|c| set(c, max + 1))), *field);
            assert_eq!(rejected_field(with(&|c| set(c, 0))), *field);
        }
        assert!(with(&|c| c.vocab_size = 3).validate().is_ok());
        assert_eq!(rejected_field(with(&|c| c.vocab_size = 2)), "vocab_size");
        assert_eq!(rejected_field(with(&|c| c.n_heads = 0)), "n_heads");
        assert_eq!(rejected_field(with(&|c| c.block_size = 0)), "block_size");
        // One head of 64 (even) is fine; 32 heads of 2 too; 64 heads of 1 are odd.
        assert!(with(&|c| c.n_heads = 1).validate().is_ok());
        assert!(with(&|c| c.n_heads = 32).validate().is_ok());
        assert_eq!(rejected_field(with(&|c| c.n_heads = 64)), "n_heads");
        assert_eq!(rejected_field(with(&|c| c.n_heads = 3)), "n_heads");
        assert!(with(&|c| c.block_size = 64).validate().is_ok());
        assert_eq!(rejected_field(with(&|c| c.block_size = 128)), "block_size");
        assert!(matches!(
            with(&|c| c.block_size = 5).validate(),
            Err(Error::BlockSizeMismatch { .. })
        ));
        assert_eq!(rejected_field(with(&|c| c.adaln = false)), "adaln");
        assert_eq!(rejected_field(with(&|c| c.causal = true)), "causal");
        assert_eq!(
            rejected_field(with(&|c| c.cross_attn = false)),
            "cross_attn"
        );
        assert_eq!(
            rejected_field(with(&|c| c.time_conditioning = true)),
            "time_conditioning"
        );
        assert_eq!(
            rejected_field(with(&|c| c.model_type = "gpt2".into())),
            "model_type"
        );
        // A round trip through the manifest JSON keeps every field.
        let text = base.to_json().to_string();
        assert_eq!(Config::from_json_str(&text).expect("round trip"), base);
    }

    #[test]
    fn model_length_must_be_a_multiple_of_block_size() {
        let err = Config::from_json_str(r#"{"model_length":100,"block_size":16}"#).unwrap_err();
        match err {
            Error::BlockSizeMismatch {
                model_length,
                block_size,
            } => {
                assert_eq!((model_length, block_size), (100, 16));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(Config::from_json_str(r#"{"model_length":96,"block_size":16}"#).is_ok());
    }
}
