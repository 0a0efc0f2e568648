//! `bd3lm quantize`: an HF checkpoint → a model package (`docs/package-format.md`), streamed
//! tensor by tensor (peak memory ≈ the largest tensor plus one shard).

use crate::error::{CliError, CliResult};
use crate::progress;
use bd3lm::convert;
use bd3lm::hf_file::HfFile;
use bd3lm::package::{PackageInfo, PackageWriter, SchemePlan, SpecialTokens, MAX_SHARD_BYTES};
use bd3lm::quant::Scheme;
use bd3lm::tokenizer::Tokenizer;
use bd3lm::Config;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    F32,
    F16,
    Q8,
    Q4,
}

impl FormatArg {
    pub fn scheme(self) -> Scheme {
        match self {
            FormatArg::F32 => Scheme::F32,
            FormatArg::F16 => Scheme::F16,
            FormatArg::Q8 => Scheme::Q8,
            FormatArg::Q4 => Scheme::Q4,
        }
    }
}

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// Hugging Face directory (config.json + model.safetensors).
    hf_dir: PathBuf,
    /// Package directory to write (created; must be empty unless --force).
    out_dir: PathBuf,
    /// Weight format (scheme plans per format: docs/quantization.md).
    #[arg(long, value_enum)]
    format: FormatArg,
    /// tokenizer.json to ship (default: the one in hf_dir).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Package name in the manifest (default: the output directory's name).
    #[arg(long)]
    name: Option<String>,
    /// Overwrite the files of a non-empty output directory.
    #[arg(long)]
    force: bool,
}

fn read_tokenizer(args: &QuantizeArgs, cfg: &Config) -> CliResult<(Vec<u8>, SpecialTokens)> {
    let path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.hf_dir.join("tokenizer.json"));
    if !path.is_file() {
        return Err(CliError::Usage(format!(
            "{}: no tokenizer.json; a package ships its tokenizer, pass --tokenizer FILE (GPT-2 for the released models: models/tokenizers/gpt2/tokenizer.json)",
            path.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| CliError::io(&path, e))?;
    let tok = Tokenizer::from_bytes(&bytes, cfg.vocab_size)
        .map_err(|e| CliError::core(path.display().to_string(), e))?;
    let special = SpecialTokens {
        bos: tok.eos,
        eos: tok.eos,
        mask: tok.mask,
    };
    Ok((bytes, special))
}

fn prepare_out_dir(dir: &Path, force: bool) -> CliResult<()> {
    if dir.exists() {
        let non_empty = std::fs::read_dir(dir)
            .map_err(|e| CliError::io(dir, e))?
            .next()
            .is_some();
        if non_empty && !force {
            return Err(CliError::Usage(format!(
                "{}: output directory is not empty (pass --force to overwrite)",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))
}

pub fn run(args: QuantizeArgs) -> CliResult<()> {
    let config_path = args.hf_dir.join("config.json");
    let config_text =
        std::fs::read_to_string(&config_path).map_err(|e| CliError::io(&config_path, e))?;
    let cfg = Config::from_json_str(&config_text)
        .map_err(|e| CliError::core(args.hf_dir.display().to_string(), e))?;
    let (tokenizer_json, special) = read_tokenizer(&args, &cfg)?;
    let model_path = args.hf_dir.join("model.safetensors");
    let mut file = HfFile::open(&model_path)
        .and_then(|f| f.check(&cfg).map(|_| f))
        .map_err(|e| CliError::core("", e))?;
    prepare_out_dir(&args.out_dir, args.force)?;
    // A stale manifest must never describe new shards: remove it until the new one is written.
    let manifest_path = args.out_dir.join("manifest.json");
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path).map_err(|e| CliError::io(&manifest_path, e))?;
    }

    let plan = SchemePlan::for_format(args.format.scheme());
    let started = Instant::now();
    let bar = progress::byte_bar(convert::hf_value_count(&cfg) * 4, "converting");
    let out_dir = args.out_dir.clone();
    let mut writer = PackageWriter::new(MAX_SHARD_BYTES, |name: &str, bytes: Vec<u8>| {
        let path = out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| bd3lm::Error::io(path.display().to_string(), e))
    });
    let read = |name: &str, shape: &[usize]| file.read_f32(name, shape);
    convert::hf_to_package(&cfg, read, plan, &mut writer, |values| {
        bar.set_position(values * 4)
    })
    .map_err(|e| CliError::core("", e))?;
    bar.finish_and_clear();
    let name = args.name.clone().unwrap_or_else(|| {
        args.out_dir
            .file_name()
            .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().to_string())
    });
    let info = PackageInfo {
        name,
        quantization: args.format.scheme().name().to_string(),
        config: cfg.clone(),
        special_tokens: special,
        source: serde_json::json!({
            "checkpoint": model_path.file_name().map(|n| n.to_string_lossy().to_string()),
            "checkpoint_bytes": file.len(),
            "converter": format!("bd3lm {}", env!("CARGO_PKG_VERSION")),
            "plan": {
                "embedding": plan.embedding.name(),
                "transformer": plan.transformer.name(),
                "lm_head": plan.lm_head.name(),
            },
        }),
    };
    let manifest = writer
        .finish(info, &tokenizer_json)
        .map_err(|e| CliError::core("", e))?;
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| CliError::Failed(format!("cannot encode manifest.json: {e}")))?;
    std::fs::write(&manifest_path, text + "\n").map_err(|e| CliError::io(&manifest_path, e))?;
    let manifest_bytes = std::fs::metadata(&manifest_path)
        .map(|m| m.len())
        .unwrap_or(0);
    let total = manifest.download_bytes + manifest_bytes;
    println!(
        "wrote {} ({} files, {:.2} MB with manifest; embedding {}, transformer {}, LM head {}) in {:.1} s",
        args.out_dir.display(),
        manifest.files.len() + 2,
        total as f64 / 1e6,
        plan.embedding.name(),
        plan.transformer.name(),
        plan.lm_head.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
