//! Compute pipelines with explicit bind-group layouts, compiled once per (shader file, entry
//! point, variant, layout) and cached per device.

use crate::context::GpuContext;
use crate::error::{GpuError, Result};
use crate::shaders::{self, Variant};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;

/// One binding of a kernel's bind-group layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// A uniform struct, bound whole.
    Uniform,
    /// The step table (`Step` of uniforms.wgsl): one slot per step, bound with a dynamic
    /// offset so the steps of one submission read different slots.
    StepTable,
    /// A storage buffer the kernel only reads.
    Read,
    /// A storage buffer the kernel writes.
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub shader: &'static str,
    pub entry: &'static str,
    pub variant: Variant,
    /// The bind-group layout: (binding, kind) in binding order.
    pub slots: Vec<(u32, Slot)>,
}

/// A compiled pipeline and its bind-group layout.
#[derive(Clone)]
pub struct Compiled {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// Whether the layout has the dynamic step-table binding.
    pub dynamic: bool,
}

pub struct PipelineCache {
    pipelines: Mutex<HashMap<PipelineKey, Compiled>>,
}

impl Default for PipelineCache {
    fn default() -> Self {
        Self::new()
    }
}

fn layout_entry(binding: u32, slot: Slot) -> wgpu::BindGroupLayoutEntry {
    let (ty, has_dynamic_offset, min) = match slot {
        Slot::Uniform => (wgpu::BufferBindingType::Uniform, false, None),
        Slot::StepTable => (
            wgpu::BufferBindingType::Uniform,
            true,
            NonZeroU64::new(crate::dispatch::STEP_BYTES),
        ),
        Slot::Read => (
            wgpu::BufferBindingType::Storage { read_only: true },
            false,
            None,
        ),
        Slot::ReadWrite => (
            wgpu::BufferBindingType::Storage { read_only: false },
            false,
            None,
        ),
    };
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset,
            min_binding_size: min,
        },
        count: None,
    }
}

impl PipelineCache {
    pub fn new() -> Self {
        PipelineCache {
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pipeline for `key`, compiling it (and reporting compile errors) on first use.
    pub async fn get(&self, ctx: &GpuContext, key: &PipelineKey) -> Result<Compiled> {
        if let Some(p) = self.pipelines.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(p);
        }
        let source =
            shaders::expand(key.shader, &key.variant).map_err(|message| GpuError::Shader {
                shader: key.shader.to_string(),
                message,
            })?;
        let label = format!("{}:{} {:?}", key.shader, key.entry, key.variant.flags);
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = key
            .slots
            .iter()
            .map(|&(binding, slot)| layout_entry(binding, slot))
            .collect();
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(err) = scope.pop().await {
            return Err(GpuError::Shader {
                shader: label,
                message: err.to_string(),
            });
        }
        let compiled = Compiled {
            pipeline,
            layout,
            dynamic: key.slots.iter().any(|(_, s)| *s == Slot::StepTable),
        };
        if let Ok(mut m) = self.pipelines.lock() {
            m.insert(key.clone(), compiled.clone());
        }
        Ok(compiled)
    }
}
