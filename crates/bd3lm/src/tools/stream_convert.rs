//! HF checkpoint → package, converting tensors in the order their bytes come (file order), as
//! a download delivers them: the page converts `model.safetensors` while it streams in, and
//! `bd3lm quantize` reads the file front to back through the very same code, so both write the
//! same package bytes (`docs/package-format.md`, "Tensor order").
//!
//! Memory: a matrix is encoded row batch by row batch and goes into the shards piece by piece,
//! so only a batch of f32 rows, one piece and one shard are held. What cannot be finished when
//! it arrives waits: the adaLN weights (whose products with the conditioning vector `c` are
//! the stored modulation constants, spec §4.2) until the timestep MLP that yields `c` has
//! arrived; in file order (names sorted) that MLP comes after the blocks, so all adaLN weights
//! of the released model wait (28 MB of f32).

use crate::checkpoint::{conditioning_vector, hf_tensor_specs};
use crate::config::Config;
use crate::convert::{encode_matrix, matrix_role};
use crate::error::{Error, Result};
use crate::hf_file::{CheckpointDtype, SafetensorsHeader};
use crate::hf_stream::{SafetensorsStream, StreamEvent};
use crate::package::{Manifest, PackageInfo, PackageWriter, SchemePlan, SpecialTokens};
use crate::quant::{Matrix, Scheme};
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;

/// f32 values encoded at a time: 16 MB natively (enough for the encoder's threads), 4 MB in a
/// browser tab (one thread there; less memory). The batch size never changes the output.
#[cfg(not(target_arch = "wasm32"))]
const ROW_BATCH_VALUES: usize = 4 << 20;
#[cfg(target_arch = "wasm32")]
const ROW_BATCH_VALUES: usize = 1 << 20;

/// Where a modulation constant goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ModTarget {
    Layer(usize),
    Final,
}

impl ModTarget {
    fn canonical(&self) -> String {
        match self {
            ModTarget::Layer(l) => format!("layers.{l}.modulation"),
            ModTarget::Final => "final.modulation".into(),
        }
    }
}

/// What the converter does with one checkpoint tensor.
#[derive(Debug, Clone)]
enum Role {
    /// Stored as an f32 vector under the canonical name.
    Vector(String),
    /// Stored as a matrix under the canonical name (scheme from the plan).
    Matrix(String),
    /// One of the four timestep-MLP tensors that give `c` (index in `sigma`).
    Sigma(usize),
    AdaWeight(ModTarget),
    AdaBias(ModTarget),
    /// Read and dropped (`sampling_eps_min/max`, and tensors the model does not use).
    Unused,
}

fn roles(cfg: &Config) -> HashMap<String, Role> {
    let mut roles = HashMap::new();
    for (name, _) in hf_tensor_specs(cfg) {
        let role = match name.as_str() {
            "backbone.vocab_embed.embedding" => Role::Matrix("embedding".into()),
            "backbone.sigma_map.mlp.0.weight" => Role::Sigma(0),
            "backbone.sigma_map.mlp.0.bias" => Role::Sigma(1),
            "backbone.sigma_map.mlp.2.weight" => Role::Sigma(2),
            "backbone.sigma_map.mlp.2.bias" => Role::Sigma(3),
            "backbone.rotary_emb.inv_freq" => Role::Vector("rotary.inv_freq".into()),
            "backbone.output_layer.norm_final.weight" => Role::Vector("final.norm".into()),
            "backbone.output_layer.linear.weight" => Role::Matrix("lm_head.weight".into()),
            "backbone.output_layer.linear.bias" => Role::Vector("lm_head.bias".into()),
            "backbone.output_layer.adaLN_modulation.weight" => Role::AdaWeight(ModTarget::Final),
            "backbone.output_layer.adaLN_modulation.bias" => Role::AdaBias(ModTarget::Final),
            "sampling_eps_min" | "sampling_eps_max" => Role::Unused,
            other => layer_role(other).unwrap_or(Role::Unused),
        };
        roles.insert(name, role);
    }
    roles
}

fn layer_role(name: &str) -> Option<Role> {
    let rest = name.strip_prefix("backbone.blocks.")?;
    let (layer, part) = rest.split_once('.')?;
    let l: usize = layer.parse().ok()?;
    let ours = |s: &str| format!("layers.{l}.{s}");
    Some(match part {
        "norm1.weight" => Role::Vector(ours("norm1")),
        "attn_qkv.weight" => Role::Matrix(ours("qkv")),
        "attn_out.weight" => Role::Matrix(ours("attn_out")),
        "norm2.weight" => Role::Vector(ours("norm2")),
        "mlp.0.weight" => Role::Matrix(ours("mlp_in.weight")),
        "mlp.0.bias" => Role::Vector(ours("mlp_in.bias")),
        "mlp.2.weight" => Role::Matrix(ours("mlp_out.weight")),
        "mlp.2.bias" => Role::Vector(ours("mlp_out.bias")),
        "adaLN_modulation.weight" => Role::AdaWeight(ModTarget::Layer(l)),
        "adaLN_modulation.bias" => Role::AdaBias(ModTarget::Layer(l)),
        _ => return None,
    })
}

/// The checkpoint tensor whose bytes are arriving.
struct Current {
    name: String,
    role: Role,
    dtype: CheckpointDtype,
    shape: Vec<usize>,
    /// Bytes of a value split between two chunks.
    partial: Vec<u8>,
    /// Decoded values not yet used (a vector's or small tensor's values; a matrix's rows
    /// until a batch is full).
    values: Vec<f32>,
    /// Matrix rows already encoded and handed to the writer.
    rows_done: usize,
    /// The matrix's scheme (plan, or its fallback for the row length).
    scheme: Scheme,
}

/// A modulation waiting for its weight, bias or `c`.
#[derive(Default)]
struct PendingModulation {
    weight: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
}

/// Converts a checkpoint streamed through [`StreamingConverter::push`] into a package.
pub struct StreamingConverter<S: FnMut(&str, Vec<u8>) -> Result<()>> {
    cfg: Config,
    plan: SchemePlan,
    /// The checkpoint's name in errors.
    file: String,
    writer: PackageWriter<S>,
    stream: SafetensorsStream,
    roles: HashMap<String, Role>,
    current: Option<Current>,
    sigma: [Option<Vec<f32>>; 4],
    cond: Option<Vec<f32>>,
    pending: HashMap<ModTarget, PendingModulation>,
    /// Modulations whose inputs are complete, waiting only for `c`, in arrival order.
    ready: Vec<ModTarget>,
    modulations_written: usize,
}

impl<S: FnMut(&str, Vec<u8>) -> Result<()>> StreamingConverter<S> {
    /// A converter for `file` (`len` bytes) of a model with config `cfg`, each matrix encoded
    /// by `plan`, shards going to `writer`'s sink as they fill.
    pub fn new(
        cfg: &Config,
        plan: SchemePlan,
        file: &str,
        len: u64,
        writer: PackageWriter<S>,
    ) -> Self {
        StreamingConverter {
            cfg: cfg.clone(),
            plan,
            file: file.to_string(),
            writer,
            stream: SafetensorsStream::new(file, len),
            roles: roles(cfg),
            current: None,
            sigma: Default::default(),
            cond: None,
            pending: HashMap::new(),
            ready: Vec::new(),
            modulations_written: 0,
        }
    }

    /// The checkpoint tensor being converted right now (for progress displays).
    pub fn current_tensor(&self) -> Option<&str> {
        self.current.as_ref().map(|c| c.name.as_str())
    }

    /// Bytes of the checkpoint consumed so far.
    pub fn position(&self) -> u64 {
        self.stream.position()
    }

    /// Consumes the next bytes of the checkpoint.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let mut stream = std::mem::replace(&mut self.stream, SafetensorsStream::new("", 0));
        let result = stream.push(chunk, &mut |event| self.on_event(event));
        self.stream = stream;
        result
    }

    fn on_event(&mut self, event: StreamEvent<'_>) -> Result<()> {
        match event {
            StreamEvent::Header(header) => self.on_header(header),
            StreamEvent::TensorBytes {
                name,
                info,
                offset,
                bytes,
            } => {
                if offset == 0 {
                    self.start_tensor(name, &info.dtype, &info.shape)?;
                }
                self.tensor_bytes(bytes)?;
                if offset + bytes.len() as u64 == info.end - info.start {
                    self.end_tensor()?;
                }
                Ok(())
            }
        }
    }

    /// Every tensor the model needs must be there, with its shape and a checkpoint dtype,
    /// before any conversion work starts.
    fn on_header(&mut self, header: &SafetensorsHeader) -> Result<()> {
        header.check(&self.file, &self.cfg)
    }

    fn start_tensor(&mut self, name: &str, dtype: &str, shape: &[usize]) -> Result<()> {
        let role = self.roles.get(name).cloned().unwrap_or(Role::Unused);
        // The header check vouched for the dtype of every tensor the model uses.
        let dtype = CheckpointDtype::parse(dtype).unwrap_or(CheckpointDtype::F32);
        let scheme = match (&role, shape) {
            (Role::Matrix(canonical), [rows, cols]) => {
                let wanted = self.plan.scheme_for(matrix_role(canonical));
                let scheme = [wanted, Scheme::F16, Scheme::F32]
                    .into_iter()
                    .find(|s| s.supports_cols(*cols))
                    .unwrap_or(Scheme::F32);
                self.writer.begin_matrix(canonical, *rows, *cols, scheme)?;
                scheme
            }
            _ => Scheme::F32,
        };
        self.current = Some(Current {
            name: name.to_string(),
            role,
            dtype,
            shape: shape.to_vec(),
            partial: Vec::new(),
            values: Vec::new(),
            rows_done: 0,
            scheme,
        });
        Ok(())
    }

    fn tensor_bytes(&mut self, mut bytes: &[u8]) -> Result<()> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if matches!(cur.role, Role::Unused) {
            return Ok(());
        }
        let size = cur.dtype.size();
        if !cur.partial.is_empty() {
            let take = (size - cur.partial.len()).min(bytes.len());
            cur.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if cur.partial.len() == size {
                let partial = std::mem::take(&mut cur.partial);
                cur.dtype.decode_into(&partial, &mut cur.values);
            }
        }
        let whole = bytes.len() / size * size;
        cur.dtype.decode_into(&bytes[..whole], &mut cur.values);
        cur.partial.extend_from_slice(&bytes[whole..]);
        if let (Role::Matrix(_), [_, cols]) = (&cur.role, cur.shape.as_slice()) {
            let cols = *cols;
            if cols > 0 && cur.values.len() >= ROW_BATCH_VALUES.max(cols) {
                let rows = cur.values.len() / cols;
                self.encode_rows(rows)?;
            }
        }
        Ok(())
    }

    /// Encodes the first `rows` buffered rows of the current matrix and hands them on.
    fn encode_rows(&mut self, rows: usize) -> Result<()> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        let cols = cur.shape.get(1).copied().unwrap_or(0);
        let rest = cur.values.split_off(rows * cols);
        let batch = std::mem::replace(&mut cur.values, rest);
        let encoded = encode_matrix(&Matrix::from_f32(rows, cols, batch), cur.scheme);
        cur.rows_done += rows;
        self.writer.matrix_rows(encoded)
    }

    fn end_tensor(&mut self) -> Result<()> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        match cur.role.clone() {
            Role::Unused => Ok(()),
            Role::Vector(canonical) => self.writer.vector(&canonical, &cur.values),
            Role::Matrix(_) => {
                let cols = cur.shape.get(1).copied().unwrap_or(0);
                let rows = cur.values.len().checked_div(cols).unwrap_or(0);
                self.current = Some(cur);
                if rows > 0 {
                    self.encode_rows(rows)?;
                }
                self.current = None;
                self.writer.end_matrix()
            }
            Role::Sigma(i) => {
                self.sigma[i] = Some(cur.values);
                if let [Some(w1), Some(b1), Some(w2), Some(b2)] = &self.sigma {
                    let cond = conditioning_vector(w1, b1, w2, b2);
                    self.sigma = Default::default();
                    self.writer.vector("cond", &cond)?;
                    self.cond = Some(cond);
                    for target in std::mem::take(&mut self.ready) {
                        self.write_modulation(&target)?;
                    }
                }
                Ok(())
            }
            Role::AdaWeight(target) => {
                self.pending.entry(target.clone()).or_default().weight = Some(cur.values);
                self.modulation_input_arrived(target)
            }
            Role::AdaBias(target) => {
                self.pending.entry(target.clone()).or_default().bias = Some(cur.values);
                self.modulation_input_arrived(target)
            }
        }
    }

    fn modulation_input_arrived(&mut self, target: ModTarget) -> Result<()> {
        let complete = self
            .pending
            .get(&target)
            .is_some_and(|p| p.weight.is_some() && p.bias.is_some());
        if !complete {
            return Ok(());
        }
        if self.cond.is_some() {
            self.write_modulation(&target)
        } else {
            self.ready.push(target);
            Ok(())
        }
    }

    /// `modulation = W c + b`, accumulated in f64 like `checkpoint::load_hf`.
    fn write_modulation(&mut self, target: &ModTarget) -> Result<()> {
        let (Some(cond), Some(p)) = (&self.cond, self.pending.remove(target)) else {
            return Ok(());
        };
        let (Some(w), Some(b)) = (p.weight, p.bias) else {
            return Ok(());
        };
        let values: Vec<f32> = w
            .chunks_exact(cond.len().max(1))
            .zip(&b)
            .map(|(row, &bias)| {
                let dot: f64 = row
                    .iter()
                    .zip(cond)
                    .map(|(&a, &c)| a as f64 * c as f64)
                    .sum();
                (dot + bias as f64) as f32
            })
            .collect();
        self.modulations_written += 1;
        self.writer.vector(&target.canonical(), &values)
    }

    /// After the last byte: checks everything arrived, writes the last shard and the
    /// tokenizer, and returns the manifest (to be stored as `manifest.json`).
    pub fn finish(self, info: PackageInfo, tokenizer_json: &[u8]) -> Result<Manifest> {
        self.stream.finish()?;
        if self.cond.is_none() || self.modulations_written != self.cfg.n_layers + 1 {
            return Err(Error::package(
                &self.file,
                "the checkpoint ended before every tensor arrived",
            ));
        }
        self.writer.finish(info, tokenizer_json)
    }
}

/// The manifest fields besides tensors and files, as every converter writes them (the CLI and
/// the page must agree byte for byte): `source` records the checkpoint and the plan.
pub fn package_info(
    cfg: &Config,
    plan: SchemePlan,
    name: &str,
    special_tokens: SpecialTokens,
    checkpoint_bytes: u64,
) -> PackageInfo {
    PackageInfo {
        name: name.to_string(),
        // Each format's plan is uniform, so its scheme names the package.
        quantization: plan.transformer.name().to_string(),
        config: cfg.clone(),
        special_tokens,
        source: serde_json::json!({
            "checkpoint": crate::hub::CHECKPOINT_FILE,
            "checkpoint_bytes": checkpoint_bytes,
            "converter": format!("bd3lm {}", env!("CARGO_PKG_VERSION")),
            "plan": {
                "embedding": plan.embedding.name(),
                "transformer": plan.transformer.name(),
                "lm_head": plan.lm_head.name(),
            },
        }),
    }
}

/// The special ids a package records for a tokenizer (BOS = EOS = `<|endoftext|>`).
pub fn special_tokens(tokenizer: &Tokenizer) -> SpecialTokens {
    SpecialTokens {
        bos: tokenizer.eos,
        eos: tokenizer.eos,
        mask: tokenizer.mask,
    }
}

/// Feeds a whole checkpoint read front to back from `reader` to `converter`, reporting the
/// bytes consumed to `progress`, and finishes the package: what `bd3lm quantize` runs.
#[cfg(not(target_arch = "wasm32"))]
pub fn convert_reader<S: FnMut(&str, Vec<u8>) -> Result<()>>(
    mut converter: StreamingConverter<S>,
    mut reader: impl std::io::Read,
    info: PackageInfo,
    tokenizer_json: &[u8],
    mut progress: impl FnMut(u64),
) -> Result<Manifest> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(converter.file.clone(), e)),
        };
        converter.push(&buf[..n])?;
        progress(converter.position());
    }
    converter.finish(info, tokenizer_json)
}
