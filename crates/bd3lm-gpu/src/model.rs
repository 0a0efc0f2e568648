//! Model weights on the GPU, uploaded piece by piece (a web page streams shards straight into
//! these buffers). Matrices keep their package scheme (f32, f16, q8, q4) and are decoded inside
//! the kernels; a matrix too big for one storage binding is split by rows over two buffers.

use crate::context::{BufferScope, GpuContext};
use crate::error::{GpuError, Result};
use bd3lm::package::TensorPiece;
use bd3lm::quant::{Matrix, MatrixData, Scheme, GROUP};
use bd3lm::{Config, Weights};

/// One buffer holding rows `start_row .. start_row + rows` of a matrix.
pub struct MatrixPart {
    pub buffer: wgpu::Buffer,
    pub start_row: usize,
    pub rows: usize,
    /// Word offset of the scales region (quantized schemes).
    pub scale_off: u32,
}

pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    pub scheme: Scheme,
    pub parts: Vec<MatrixPart>,
    rows_loaded: usize,
}

/// 32-bit words of the data region of one row.
fn data_words(scheme: Scheme, cols: usize) -> usize {
    match scheme {
        Scheme::F32 => cols,
        Scheme::F16 => cols / 2,
        Scheme::Q8 => cols / 4,
        Scheme::Q4 => cols / 8,
    }
}

/// Words of the scales region of one row.
fn scale_words(scheme: Scheme, cols: usize) -> usize {
    match scheme {
        Scheme::F32 | Scheme::F16 => 0,
        Scheme::Q8 => cols / GROUP,
        Scheme::Q4 => 2 * cols / GROUP,
    }
}

fn part_bytes(scheme: Scheme, rows: usize, cols: usize) -> u64 {
    let words = rows * (data_words(scheme, cols) + scale_words(scheme, cols));
    (words as u64 * 4).div_ceil(16) * 16
}

impl GpuMatrix {
    pub fn new(
        ctx: &GpuContext,
        name: &str,
        rows: usize,
        cols: usize,
        scheme: Scheme,
    ) -> Result<GpuMatrix> {
        if !cols.is_multiple_of(8) || !scheme.supports_cols(cols) {
            return Err(GpuError::Unsupported(format!(
                "`{name}`: rows of {cols} values cannot be stored as {}",
                scheme.name()
            )));
        }
        let limit = ctx.max_binding_bytes();
        let pieces = (1..=2)
            .find(|&n| part_bytes(scheme, rows.div_ceil(n), cols) <= limit)
            .ok_or_else(|| {
                GpuError::Unsupported(format!(
                    "`{name}` ({} MB as {}) needs more than two {} MiB storage bindings",
                    part_bytes(scheme, rows, cols) / 1_000_000,
                    scheme.name(),
                    limit >> 20
                ))
            })?;
        let per_part = rows.div_ceil(pieces);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < rows {
            let n = per_part.min(rows - start);
            let buffer = ctx.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: part_bytes(scheme, n, cols),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            parts.push(MatrixPart {
                buffer,
                start_row: start,
                rows: n,
                scale_off: (n * data_words(scheme, cols)) as u32,
            });
            start += n;
        }
        Ok(GpuMatrix {
            rows,
            cols,
            scheme,
            parts,
            rows_loaded: 0,
        })
    }

    /// Row index where the second buffer starts (rows when there is one buffer).
    pub fn split_row(&self) -> u32 {
        self.parts.get(1).map(|p| p.start_row).unwrap_or(self.rows) as u32
    }

    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }

    /// The second binding (the first buffer again when unsplit: read-only aliasing is allowed).
    pub fn second(&self) -> &wgpu::Buffer {
        &self.parts.get(1).unwrap_or(&self.parts[0]).buffer
    }

    pub fn first(&self) -> &wgpu::Buffer {
        &self.parts[0].buffer
    }

    /// Uploads rows `start_row .. start_row + m.rows` (in this matrix's scheme).
    pub fn write_rows(
        &mut self,
        queue: &wgpu::Queue,
        name: &str,
        start_row: usize,
        m: &Matrix,
    ) -> Result<()> {
        if m.scheme() != self.scheme || m.cols != self.cols || start_row + m.rows > self.rows {
            return Err(GpuError::Unsupported(format!(
                "`{name}`: piece does not match the tensor (scheme, columns or rows)"
            )));
        }
        let cols = self.cols;
        let (dw, sw) = (
            data_words(self.scheme, cols),
            scale_words(self.scheme, cols),
        );
        for part in &self.parts {
            let lo = start_row.max(part.start_row);
            let hi = (start_row + m.rows).min(part.start_row + part.rows);
            if lo >= hi {
                continue;
            }
            let (src, dst) = (lo - start_row, lo - part.start_row);
            let n = hi - lo;
            let (data, scales) = encode_rows(m, src, n);
            queue.write_buffer(&part.buffer, (dst * dw * 4) as u64, &data);
            if sw > 0 {
                queue.write_buffer(
                    &part.buffer,
                    ((part.scale_off as usize + dst * sw) * 4) as u64,
                    &scales,
                );
            }
        }
        self.rows_loaded += m.rows;
        Ok(())
    }

    pub fn complete(&self) -> bool {
        self.rows_loaded >= self.rows
    }
}

/// Data and scale bytes of rows `src .. src + n` of `m` in the GPU layout.
fn encode_rows(m: &Matrix, src: usize, n: usize) -> (Vec<u8>, Vec<u8>) {
    let c = m.cols;
    let g = c / GROUP;
    match &m.data {
        MatrixData::F32(v) => (
            bytemuck::cast_slice(&v[src * c..(src + n) * c]).to_vec(),
            Vec::new(),
        ),
        MatrixData::F16(v) => (
            bytemuck::cast_slice(&v[src * c..(src + n) * c]).to_vec(),
            Vec::new(),
        ),
        MatrixData::Q8 { q, scales } => {
            let data = bytemuck::cast_slice(&q[src * c..(src + n) * c]).to_vec();
            let s: Vec<f32> = scales[src * g..(src + n) * g]
                .iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect();
            (data, bytemuck::cast_slice(&s).to_vec())
        }
        MatrixData::Q4 { q, scales, mins } => {
            let data = q[src * c / 2..(src + n) * c / 2].to_vec();
            let mut s = Vec::with_capacity(2 * n * g);
            for i in src * g..(src + n) * g {
                s.push(half::f16::from_bits(scales[i]).to_f32());
                s.push(half::f16::from_bits(mins[i]).to_f32());
            }
            (data, bytemuck::cast_slice(&s).to_vec())
        }
    }
}

pub struct GpuLayer {
    pub qkv: GpuMatrix,
    pub attn_out: GpuMatrix,
    pub mlp_in: GpuMatrix,
    pub mlp_out: GpuMatrix,
}

/// Offsets (in floats) of the small vectors inside the `vecs` buffer.
#[derive(Debug, Clone, Copy)]
pub struct VecLayout {
    pub hidden: usize,
    pub layers: usize,
}

impl VecLayout {
    const PER_LAYER: usize = 13;

    pub fn layer(&self, l: usize) -> usize {
        l * Self::PER_LAYER * self.hidden
    }
    pub fn norm1(&self, l: usize) -> usize {
        self.layer(l)
    }
    pub fn norm2(&self, l: usize) -> usize {
        self.layer(l) + self.hidden
    }
    /// Chunk `i` (0..6: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp).
    pub fn modulation(&self, l: usize, i: usize) -> usize {
        self.layer(l) + (2 + i) * self.hidden
    }
    pub fn mlp_in_bias(&self, l: usize) -> usize {
        self.layer(l) + 8 * self.hidden
    }
    pub fn mlp_out_bias(&self, l: usize) -> usize {
        self.layer(l) + 12 * self.hidden
    }
    pub fn final_norm(&self) -> usize {
        self.layer(self.layers)
    }
    /// 0 = shift, 1 = scale.
    pub fn final_modulation(&self, i: usize) -> usize {
        self.final_norm() + (1 + i) * self.hidden
    }
    pub fn lm_head_bias(&self) -> usize {
        self.final_norm() + 3 * self.hidden
    }
    pub fn len(&self, vocab: usize) -> usize {
        self.lm_head_bias() + vocab
    }
}

pub struct GpuModel {
    pub config: Config,
    pub embedding: GpuMatrix,
    pub layers: Vec<GpuLayer>,
    pub lm_head: GpuMatrix,
    pub vecs: wgpu::Buffer,
    pub vec_layout: VecLayout,
    /// `[n_ctx, d/2]` cos then `[n_ctx, d/2]` sin, as the CPU reference computes them.
    pub rope: wgpu::Buffer,
    /// Every buffer above: destroyed with the model (a reloaded page frees them at once).
    buffers: BufferScope,
}

impl GpuModel {
    /// Device buffers the model holds (destroyed with it).
    pub fn buffer_count(&self) -> usize {
        self.buffers.len()
    }

    pub fn weight_bytes(&self) -> u64 {
        let mut total =
            self.embedding.bytes() + self.lm_head.bytes() + self.vecs.size() + self.rope.size();
        for l in &self.layers {
            total += l.qkv.bytes() + l.attn_out.bytes() + l.mlp_in.bytes() + l.mlp_out.bytes();
        }
        total
    }

    /// Uploads whole in-memory weights.
    pub fn from_weights(ctx: &GpuContext, w: &Weights) -> Result<GpuModel> {
        let mut loader = GpuModelLoader::new(ctx, &w.config)?;
        let full = |m: &Matrix| TensorPiece::Rows {
            start_row: 0,
            total_rows: m.rows,
            matrix: m.clone(),
        };
        loader.put("rotary.inv_freq", &TensorPiece::Vector(w.inv_freq.clone()))?;
        loader.put("embedding", &full(&w.embedding))?;
        for (l, lw) in w.layers.iter().enumerate() {
            let p = format!("layers.{l}");
            loader.put(
                &format!("{p}.norm1"),
                &TensorPiece::Vector(lw.norm1.clone()),
            )?;
            loader.put(
                &format!("{p}.norm2"),
                &TensorPiece::Vector(lw.norm2.clone()),
            )?;
            loader.put(
                &format!("{p}.modulation"),
                &TensorPiece::Vector(lw.modulation.clone()),
            )?;
            loader.put(
                &format!("{p}.mlp_in.bias"),
                &TensorPiece::Vector(lw.mlp_in_bias.clone()),
            )?;
            loader.put(
                &format!("{p}.mlp_out.bias"),
                &TensorPiece::Vector(lw.mlp_out_bias.clone()),
            )?;
            loader.put(&format!("{p}.qkv"), &full(&lw.qkv))?;
            loader.put(&format!("{p}.attn_out"), &full(&lw.attn_out))?;
            loader.put(&format!("{p}.mlp_in.weight"), &full(&lw.mlp_in))?;
            loader.put(&format!("{p}.mlp_out.weight"), &full(&lw.mlp_out))?;
        }
        loader.put("final.norm", &TensorPiece::Vector(w.final_norm.clone()))?;
        loader.put(
            "final.modulation",
            &TensorPiece::Vector(w.final_modulation.clone()),
        )?;
        loader.put("lm_head.weight", &full(&w.lm_head))?;
        loader.put("lm_head.bias", &TensorPiece::Vector(w.lm_head_bias.clone()))?;
        loader.finish()
    }
}

/// Receives tensor pieces in any order (as package shards arrive) and uploads each at once.
pub struct GpuModelLoader {
    /// Registers every buffer in `buffers`.
    ctx: GpuContext,
    /// The model's buffers: destroyed with the model, or with the loader if it is dropped.
    buffers: BufferScope,
    config: Config,
    matrices: std::collections::BTreeMap<String, GpuMatrix>,
    vecs: wgpu::Buffer,
    layout: VecLayout,
    vectors_loaded: std::collections::BTreeSet<String>,
    rope: Option<wgpu::Buffer>,
}

impl GpuModelLoader {
    pub fn new(ctx: &GpuContext, config: &Config) -> Result<GpuModelLoader> {
        let (ctx, buffers) = ctx.scoped();
        let ctx = &ctx;
        let layout = VecLayout {
            hidden: config.hidden_dim,
            layers: config.n_layers,
        };
        let vecs = ctx.create_buffer(&wgpu::BufferDescriptor {
            label: Some("vecs"),
            size: (layout.len(config.vocab_size) * 4).div_ceil(16) as u64 * 16,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(GpuModelLoader {
            ctx: ctx.clone(),
            buffers,
            config: config.clone(),
            matrices: Default::default(),
            vecs,
            layout,
            vectors_loaded: Default::default(),
            rope: None,
        })
    }

    fn vector_offset(&self, name: &str) -> Option<(usize, usize)> {
        let (h, lay) = (self.config.hidden_dim, self.layout);
        let fixed = match name {
            "final.norm" => Some((lay.final_norm(), h)),
            "final.modulation" => Some((lay.final_modulation(0), 2 * h)),
            "lm_head.bias" => Some((lay.lm_head_bias(), self.config.vocab_size)),
            _ => None,
        };
        if fixed.is_some() {
            return fixed;
        }
        let rest = name.strip_prefix("layers.")?;
        let (l, field) = rest.split_once('.')?;
        let l: usize = l.parse().ok().filter(|&l| l < self.config.n_layers)?;
        match field {
            "norm1" => Some((lay.norm1(l), h)),
            "norm2" => Some((lay.norm2(l), h)),
            "modulation" => Some((lay.modulation(l, 0), 6 * h)),
            "mlp_in.bias" => Some((lay.mlp_in_bias(l), 4 * h)),
            "mlp_out.bias" => Some((lay.mlp_out_bias(l), h)),
            _ => None,
        }
    }

    fn matrix_shape(&self, name: &str) -> Option<(usize, usize)> {
        let (v, h) = (self.config.vocab_size, self.config.hidden_dim);
        match name {
            "embedding" | "lm_head.weight" => return Some((v, h)),
            _ => {}
        }
        let rest = name.strip_prefix("layers.")?;
        let (l, field) = rest.split_once('.')?;
        l.parse::<usize>()
            .ok()
            .filter(|&l| l < self.config.n_layers)?;
        match field {
            "qkv" => Some((3 * h, h)),
            "attn_out" => Some((h, h)),
            "mlp_in.weight" => Some((4 * h, h)),
            "mlp_out.weight" => Some((h, 4 * h)),
            _ => None,
        }
    }

    /// Uploads one piece. Unknown names are ignored only for tensors the GPU does not use.
    pub fn put(&mut self, name: &str, piece: &TensorPiece) -> Result<()> {
        self.ctx.check()?;
        match piece {
            TensorPiece::Vector(v) if name == "rotary.inv_freq" => {
                let table = rope_table(&self.config, v);
                self.rope = Some(
                    self.ctx
                        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                            label: Some("rope"),
                            contents: bytemuck::cast_slice(&table),
                            usage: wgpu::BufferUsages::STORAGE,
                        }),
                );
            }
            TensorPiece::Vector(_) if name == "cond" => {}
            TensorPiece::Vector(v) => {
                let (off, len) = self
                    .vector_offset(name)
                    .ok_or_else(|| GpuError::Unsupported(format!("unexpected tensor `{name}`")))?;
                if v.len() != len {
                    return Err(GpuError::Unsupported(format!(
                        "`{name}` has {} values, expected {len}",
                        v.len()
                    )));
                }
                self.ctx
                    .queue
                    .write_buffer(&self.vecs, (off * 4) as u64, bytemuck::cast_slice(v));
                self.vectors_loaded.insert(name.to_string());
            }
            TensorPiece::Rows {
                start_row,
                total_rows,
                matrix,
            } => {
                let (rows, cols) = self
                    .matrix_shape(name)
                    .ok_or_else(|| GpuError::Unsupported(format!("unexpected tensor `{name}`")))?;
                if *total_rows != rows || matrix.cols != cols {
                    return Err(GpuError::Unsupported(format!(
                        "`{name}` is [{total_rows}, {}], expected [{rows}, {cols}]",
                        matrix.cols
                    )));
                }
                if !self.matrices.contains_key(name) {
                    let m = GpuMatrix::new(&self.ctx, name, rows, cols, matrix.scheme())?;
                    self.matrices.insert(name.to_string(), m);
                }
                if let Some(m) = self.matrices.get_mut(name) {
                    m.write_rows(&self.ctx.queue, name, *start_row, matrix)?;
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, name: &str) -> Result<GpuMatrix> {
        match self.matrices.remove(name) {
            Some(m) if m.complete() => Ok(m),
            Some(_) => Err(GpuError::Unsupported(format!(
                "tensor `{name}` was only partly loaded"
            ))),
            None => Err(GpuError::Unsupported(format!(
                "tensor `{name}` was never loaded"
            ))),
        }
    }

    pub fn finish(mut self) -> Result<GpuModel> {
        let expected = 3 + 5 * self.config.n_layers;
        if self.vectors_loaded.len() != expected {
            return Err(GpuError::Unsupported(format!(
                "only {} of {expected} vector tensors were loaded",
                self.vectors_loaded.len()
            )));
        }
        let rope = self.rope.take().ok_or_else(|| {
            GpuError::Unsupported("tensor `rotary.inv_freq` was never loaded".into())
        })?;
        let mut layers = Vec::new();
        for l in 0..self.config.n_layers {
            layers.push(GpuLayer {
                qkv: self.take(&format!("layers.{l}.qkv"))?,
                attn_out: self.take(&format!("layers.{l}.attn_out"))?,
                mlp_in: self.take(&format!("layers.{l}.mlp_in.weight"))?,
                mlp_out: self.take(&format!("layers.{l}.mlp_out.weight"))?,
            });
        }
        self.ctx.check()?;
        Ok(GpuModel {
            embedding: self.take("embedding")?,
            lm_head: self.take("lm_head.weight")?,
            layers,
            vecs: self.vecs,
            vec_layout: self.layout,
            rope,
            config: self.config,
            buffers: self.buffers,
        })
    }
}

/// `cos/sin(p * inv_freq[i])` for every window position, f32 theta as the reference computes it.
pub fn rope_table(cfg: &Config, inv_freq: &[f32]) -> Vec<f32> {
    let (n, half) = (cfg.model_length, inv_freq.len());
    let mut table = vec![0f32; 2 * n * half];
    for p in 0..n {
        for (i, &f) in inv_freq.iter().enumerate() {
            let theta = (p as f32 * f) as f64;
            table[p * half + i] = theta.cos() as f32;
            table[n * half + p * half + i] = theta.sin() as f32;
        }
    }
    table
}
