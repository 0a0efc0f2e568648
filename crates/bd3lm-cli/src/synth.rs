//! `bd3lm synth`: a random f32 HF checkpoint with the released shapes (169,627,218
//! parameters for `--block-size` 4/8/16), written streaming: each tensor's values are
//! generated while it is written, so at most one tensor is in memory.
//!
//! Scales keep the network's signals sane (logits with a std of a few units): linear weights
//! N(0, 1/fan_in), LayerNorm weights 1 + 0.1·N, embedding N(0, 1), LM head 2/sqrt(H)·N, adaLN
//! weights 0.5/sqrt(C)·N with 0.1·N biases (so the gates are O(0.1–1), not the reference's
//! zero init, which would make every layer the identity).

use crate::error::{CliError, CliResult};
use crate::progress;
use bd3lm::checkpoint::{default_inv_freq, hf_tensor_specs};
use bd3lm::rng::SplitMix64;
use bd3lm::Config;
use indicatif::ProgressBar;
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Output directory (config.json + model.safetensors).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    block_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Smaller shapes for tests (default: the released 768-wide, 12-layer model).
    #[arg(long, hide = true)]
    hidden_dim: Option<usize>,
    #[arg(long, hide = true)]
    layers: Option<usize>,
    #[arg(long, hide = true)]
    heads: Option<usize>,
    #[arg(long, hide = true)]
    vocab_size: Option<usize>,
    #[arg(long, hide = true)]
    model_length: Option<usize>,
}

/// How a tensor's values are drawn.
#[derive(Debug, Clone, Copy)]
enum Init {
    /// `offset + scale * N(0, 1)`.
    Normal {
        offset: f32,
        scale: f32,
    },
    InvFreq,
    Constant(f32),
}

fn init_for(name: &str, shape: &[usize], cfg: &Config) -> Init {
    let normal = |scale: f32| Init::Normal { offset: 0.0, scale };
    let fan_in = shape.last().copied().unwrap_or(1) as f32;
    if name.ends_with("inv_freq") {
        Init::InvFreq
    } else if name == "sampling_eps_min" {
        Init::Constant(1e-3)
    } else if name == "sampling_eps_max" {
        Init::Constant(1.0)
    } else if name.contains("norm") {
        Init::Normal {
            offset: 1.0,
            scale: 0.1,
        }
    } else if name.ends_with("vocab_embed.embedding") {
        normal(1.0)
    } else if name.ends_with("output_layer.linear.weight") {
        normal(2.0 / (cfg.hidden_dim as f32).sqrt())
    } else if name.contains("adaLN_modulation") && name.ends_with("weight") {
        normal(0.5 / (cfg.cond_dim as f32).sqrt())
    } else if name.ends_with("bias") {
        normal(0.1)
    } else {
        normal(1.0 / fan_in.sqrt())
    }
}

/// A tensor whose bytes are generated when the writer asks for them.
struct LazyTensor<'a> {
    name: String,
    shape: Vec<usize>,
    init: Init,
    seed: u64,
    cfg: &'a Config,
    bar: &'a ProgressBar,
}

/// FNV-1a of the name: a per-tensor seed independent of write order.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl View for &LazyTensor<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let n: usize = self.shape.iter().product();
        let values: Vec<f32> = match self.init {
            Init::InvFreq => default_inv_freq(self.cfg.head_dim()),
            Init::Constant(c) => vec![c; n],
            Init::Normal { offset, scale } => {
                let mut rng = SplitMix64::new(self.seed ^ name_hash(&self.name));
                let mut out = Vec::with_capacity(n);
                while out.len() < n {
                    // Box–Muller: two normals per pair of uniforms.
                    let u1 = rng.next_f64().max(1e-300);
                    let u2 = rng.next_f64();
                    let r = (-2.0 * u1.ln()).sqrt();
                    let angle = std::f64::consts::TAU * u2;
                    out.push(offset + scale * (r * angle.cos()) as f32);
                    if out.len() < n {
                        out.push(offset + scale * (r * angle.sin()) as f32);
                    }
                }
                out
            }
        };
        self.bar.inc((n * 4) as u64);
        Cow::Owned(bytemuck::cast_slice(&values).to_vec())
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
}

fn config_for(args: &SynthArgs) -> CliResult<Config> {
    let mut cfg = Config::released(args.block_size);
    cfg.hidden_dim = args.hidden_dim.unwrap_or(cfg.hidden_dim);
    cfg.n_layers = args.layers.unwrap_or(cfg.n_layers);
    cfg.n_heads = args.heads.unwrap_or(cfg.n_heads);
    cfg.vocab_size = args.vocab_size.unwrap_or(cfg.vocab_size);
    cfg.model_length = args.model_length.unwrap_or(cfg.model_length);
    cfg.validate()
        .map_err(|e| CliError::Usage(format!("--block-size {}: {e}", args.block_size)))?;
    Ok(cfg)
}

pub fn run(args: SynthArgs) -> CliResult<()> {
    let cfg = config_for(&args)?;
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::io(&args.out, e))?;
    let mut config_json = cfg.to_json();
    config_json["return_dict"] = false.into();
    config_json["transformers_version"] = "4.49.0".into();
    let config_path = args.out.join("config.json");
    let text =
        serde_json::to_string_pretty(&config_json).map_err(|e| CliError::Failed(e.to_string()))?;
    std::fs::write(&config_path, text + "\n").map_err(|e| CliError::io(&config_path, e))?;

    let specs = hf_tensor_specs(&cfg);
    let total: u64 = specs
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() as u64 * 4)
        .sum();
    let bar = progress::byte_bar(total, "writing");
    let tensors: Vec<LazyTensor> = specs
        .into_iter()
        .map(|(name, shape)| LazyTensor {
            init: init_for(&name, &shape, &cfg),
            name,
            shape,
            seed: args.seed,
            cfg: &cfg,
            bar: &bar,
        })
        .collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let model_path = args.out.join("model.safetensors");
    safetensors::serialize_to_file(
        tensors.iter().map(|t| (t.name.clone(), t)),
        Some(meta),
        &model_path,
    )
    .map_err(|e| CliError::io(&model_path, e))?;
    bar.finish_and_clear();
    println!(
        "wrote {} ({} parameters, {:.1} MB, block size {})",
        args.out.display(),
        cfg.parameter_count(),
        total as f64 / 1e6,
        cfg.block_size
    );
    Ok(())
}
