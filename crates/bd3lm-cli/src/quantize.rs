//! `bd3lm quantize`: an HF checkpoint → a model package (`docs/package-format.md`), streamed
//! tensor by tensor (peak memory ≈ the largest tensor plus one shard).

use crate::error::{CliError, CliResult};
use crate::progress;
use bd3lm::hf_file::HfFile;
use bd3lm::package::{PackageWriter, SchemePlan, SpecialTokens, CONVERTER_SHARD_BYTES};
use bd3lm::quant::Scheme;
use bd3lm::stream_convert;
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
    /// Hugging Face directory (config.json + model.safetensors), or a Hub id
    /// owner/name[@revision] when no such directory exists.
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

/// The tokenizer a package of the checkpoint in `hf_dir` ships: `--tokenizer`, else the
/// checkpoint's own `tokenizer.json`, else GPT-2's (built in) for a GPT-2-vocabulary model.
pub fn read_tokenizer(
    hf_dir: &Path,
    tokenizer: Option<&Path>,
    cfg: &Config,
) -> CliResult<(Vec<u8>, SpecialTokens)> {
    let own = hf_dir.join("tokenizer.json");
    let (bytes, label) = match tokenizer {
        Some(path) => (
            std::fs::read(path).map_err(|e| CliError::io(path, e))?,
            path.display().to_string(),
        ),
        None if own.is_file() => (
            std::fs::read(&own).map_err(|e| CliError::io(&own, e))?,
            own.display().to_string(),
        ),
        None => match crate::model::builtin_tokenizer(cfg) {
            Some(bytes) => (bytes.to_vec(), "the built-in GPT-2 tokenizer".to_string()),
            None => {
                return Err(CliError::Usage(format!(
                    "{}: no tokenizer.json, and the model's vocabulary ({} tokens) is not GPT-2's; a package ships its tokenizer, pass --tokenizer FILE",
                    hf_dir.display(),
                    cfg.vocab_size
                )))
            }
        },
    };
    let tok =
        Tokenizer::from_bytes(&bytes, cfg.vocab_size).map_err(|e| CliError::core(label, e))?;
    Ok((bytes, stream_convert::special_tokens(&tok)))
}

/// Converts `model_path` (front to back, through the same streaming converter as the page)
/// into a package in `out_dir`, writing `manifest.json` last; returns the manifest.
#[allow(clippy::too_many_arguments)]
pub fn convert_checkpoint(
    cfg: &Config,
    model_path: &Path,
    len: u64,
    plan: SchemePlan,
    out_dir: &Path,
    name: &str,
    special: SpecialTokens,
    tokenizer_json: &[u8],
) -> CliResult<bd3lm::package::Manifest> {
    let bar = progress::byte_bar(len, "converting");
    let writer = PackageWriter::new(CONVERTER_SHARD_BYTES, |name: &str, bytes: Vec<u8>| {
        let path = out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| bd3lm::Error::io(path.display().to_string(), e))
    });
    let info = stream_convert::package_info(cfg, plan, name, special, len);
    let reader = std::fs::File::open(model_path).map_err(|e| CliError::io(model_path, e))?;
    let converter =
        stream_convert::StreamingConverter::new(cfg, plan, "model.safetensors", len, writer);
    let manifest = stream_convert::convert_reader(
        converter,
        std::io::BufReader::new(reader),
        info,
        tokenizer_json,
        |done| bar.set_position(done),
    )
    .map_err(|e| CliError::core("", e))?;
    bar.finish_and_clear();
    let manifest_path = out_dir.join("manifest.json");
    let text = manifest.to_file_text().map_err(|e| CliError::core("", e))?;
    std::fs::write(&manifest_path, text).map_err(|e| CliError::io(&manifest_path, e))?;
    Ok(manifest)
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
    // A Hub id (no such path): its checkpoint in the Hub cache, downloaded as needed.
    let hf_dir = match bd3lm::hub::HubId::parse(&args.hf_dir.to_string_lossy()) {
        Ok(id) if !args.hf_dir.exists() => crate::hub::checkpoint_for(&id)?,
        _ => args.hf_dir.clone(),
    };
    let config_path = hf_dir.join("config.json");
    let config_text =
        std::fs::read_to_string(&config_path).map_err(|e| CliError::io(&config_path, e))?;
    let cfg = Config::from_json_str(&config_text)
        .map_err(|e| CliError::core(hf_dir.display().to_string(), e))?;
    let (tokenizer_json, special) = read_tokenizer(&hf_dir, args.tokenizer.as_deref(), &cfg)?;
    let model_path = hf_dir.join("model.safetensors");
    let file = HfFile::open(&model_path)
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
    let name = args.name.clone().unwrap_or_else(|| {
        args.out_dir
            .file_name()
            .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().to_string())
    });
    let manifest = convert_checkpoint(
        &cfg,
        &model_path,
        file.len(),
        plan,
        &args.out_dir,
        &name,
        special,
        &tokenizer_json,
    )?;
    let manifest_path = args.out_dir.join("manifest.json");
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
