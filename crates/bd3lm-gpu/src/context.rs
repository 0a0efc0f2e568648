//! Adapter and device: the one place that talks to wgpu's instance, with clean errors when
//! there is no adapter (never a panic or a hang) and device-loss / validation tracking.

use crate::error::{GpuError, Result};
use crate::pipelines::PipelineCache;
use crate::tiling::Tiling;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The largest storage binding the engine uses, whatever the adapter allows (WebGPU's default).
pub const MAX_BINDING_BYTES: u64 = 128 << 20;

/// The most workgroup memory the kernels ask for (an adapter may offer more: 48 KiB and up on
/// desktop GPUs); WebGPU guarantees 16 KiB.
pub const MAX_WORKGROUP_BYTES: u32 = 32 << 10;

#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Restrict the backends tried (native: honours `WGPU_BACKEND` when `None`).
    pub backends: Option<wgpu::Backends>,
    pub power_preference: wgpu::PowerPreference,
    /// How the kernels split their work (`--gpu-tiling`): `Auto` picks by adapter.
    pub tiling: Tiling,
    /// Group a block's denoising steps into submissions of this many steps
    /// (`--steps-per-submit`). `None`: one submission per step, each submitted as soon as it
    /// is recorded.
    pub steps_per_submit: Option<usize>,
    /// Largest storage binding to create, below WebGPU's 128 MiB (tests use a small one to
    /// force the two-binding split of matrices).
    pub max_binding_bytes: Option<u64>,
    /// Run each block's store pass as a model call of its own instead of folding it into the
    /// next block's first call (`--no-fold`: the same tokens, one more call per block).
    pub separate_store: bool,
    /// WebGPU's default limits only (`--gpu-baseline`): the portable path every adapter runs.
    /// Otherwise the device also asks for the adapter's workgroup memory, up to
    /// [`MAX_WORKGROUP_BYTES`], which the attention kernel fills with longer key tiles.
    pub baseline: bool,
    /// Request the adapter's timestamp-query features (`bench --profile`: GPU time per
    /// dispatch); off by default so the engine's device is the same everywhere.
    pub timestamps: bool,
}

/// A device, its queue and what the engine needs to know about the adapter.
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The device's limits: WebGPU's defaults, which the engine is written to fit, with the
    /// adapter's workgroup memory unless [`GpuOptions::baseline`].
    pub limits: wgpu::Limits,
    /// What the adapter could offer (for `bd3lm info`).
    pub adapter_limits: wgpu::Limits,
    /// What the adapter could offer (for `bd3lm info`; the device has only those requested).
    pub adapter_features: wgpu::Features,
    /// The kernels' tiling on this device (`Auto` resolved by the adapter type).
    pub tiling: Tiling,
    /// Steps per submission of a block (`None`: one).
    pub steps_per_submit: Option<usize>,
    /// Engines on this context start with the store pass as a call of its own.
    pub separate_store: bool,
    binding_cap: u64,
    /// Pipelines are per device: every engine and kernel launcher on this context shares them,
    /// so a second engine (a reloaded model, the next test) compiles nothing again.
    pub pipelines: Arc<PipelineCache>,
    /// Buffers and bind groups created through this context (the only way the crate creates
    /// them: `clippy.toml` disallows the `wgpu::Device` methods), so benchmarks and tests can
    /// show that a denoising step allocates nothing.
    objects_created: Arc<AtomicU64>,
    /// Buffers created and destroyed through this device's [`BufferScope`]s (a live-buffer
    /// figure for tests: the page's reload must free the old model's buffers).
    buffers_created: Arc<AtomicU64>,
    buffers_destroyed: Arc<AtomicU64>,
    /// Where buffers created through this clone are registered, so their owner (a model, an
    /// engine) destroys them explicitly when it goes: on the web, dropping a `wgpu::Buffer`
    /// leaves the `GPUBuffer` to the JS garbage collector, which may keep its memory for long.
    scope: Option<Arc<Mutex<Vec<wgpu::Buffer>>>>,
    lost: Arc<AtomicBool>,
    lost_reason: Arc<Mutex<String>>,
    errors: Arc<Mutex<Vec<String>>>,
}

/// The buffers of one owner (a model, an engine), destroyed when it is dropped.
pub struct BufferScope {
    buffers: Arc<Mutex<Vec<wgpu::Buffer>>>,
    destroyed: Arc<AtomicU64>,
}

impl BufferScope {
    /// Buffers registered so far.
    pub fn len(&self) -> usize {
        self.buffers.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for BufferScope {
    fn drop(&mut self) {
        if let Ok(mut list) = self.buffers.lock() {
            for buffer in list.drain(..) {
                buffer.destroy();
                self.destroyed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl GpuContext {
    pub async fn new(opts: &GpuOptions) -> Result<GpuContext> {
        if opts.steps_per_submit == Some(0) {
            return Err(GpuError::Unsupported(
                "steps per submission must be at least 1".into(),
            ));
        }
        #[cfg(not(target_arch = "wasm32"))]
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        #[cfg(target_arch = "wasm32")]
        let mut desc = {
            let mut d = wgpu::InstanceDescriptor::new_without_display_handle();
            d.backends = wgpu::Backends::BROWSER_WEBGPU;
            d
        };
        if let Some(b) = opts.backends {
            desc.backends = b;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: opts.power_preference,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter {
                detail: e.to_string(),
                hint: GpuError::NO_ADAPTER_HINT,
            })?;
        let info = adapter.get_info();
        let adapter_limits = adapter.limits();
        let adapter_features = adapter.features();
        let timestamps = if opts.timestamps {
            adapter_features & crate::profile::TIMESTAMP_FEATURES
        } else {
            wgpu::Features::empty()
        };
        // WebGPU's default limits, which every kernel fits; beyond them only the adapter's own
        // workgroup memory, and only where it has more.
        let mut required_limits = wgpu::Limits::default();
        if !opts.baseline {
            required_limits.max_compute_workgroup_storage_size =
                adapter_limits.max_compute_workgroup_storage_size.clamp(
                    required_limits.max_compute_workgroup_storage_size,
                    MAX_WORKGROUP_BYTES,
                );
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("bd3lm"),
                required_features: timestamps,
                required_limits,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        let lost = Arc::new(AtomicBool::new(false));
        let lost_reason = Arc::new(Mutex::new(String::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        {
            let (lost, reason) = (lost.clone(), lost_reason.clone());
            device.set_device_lost_callback(move |why, msg| {
                lost.store(true, Ordering::SeqCst);
                if let Ok(mut r) = reason.lock() {
                    *r = format!("{why:?}: {msg}");
                }
            });
            let errors = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut list) = errors.lock() {
                    list.push(e.to_string());
                }
            }));
        }
        let limits = device.limits();
        let software = info.device_type == wgpu::DeviceType::Cpu;
        Ok(GpuContext {
            tiling: opts.tiling.resolve(software),
            steps_per_submit: opts.steps_per_submit,
            separate_store: opts.separate_store,
            binding_cap: opts.max_binding_bytes.unwrap_or(MAX_BINDING_BYTES),
            device,
            queue,
            info,
            limits,
            adapter_limits,
            adapter_features,
            pipelines: Arc::new(PipelineCache::new()),
            objects_created: Arc::new(AtomicU64::new(0)),
            buffers_created: Arc::new(AtomicU64::new(0)),
            buffers_destroyed: Arc::new(AtomicU64::new(0)),
            scope: None,
            lost,
            lost_reason,
            errors,
        })
    }

    /// Workgroup memory the kernels may use on this device (16 KiB at WebGPU's defaults).
    pub fn workgroup_bytes(&self) -> u32 {
        self.limits
            .max_compute_workgroup_storage_size
            .min(MAX_WORKGROUP_BYTES)
    }

    /// Buffers and bind groups created on this device so far.
    pub fn objects_created(&self) -> u64 {
        self.objects_created.load(Ordering::Relaxed)
    }

    /// Buffers created on this device so far, and how many of them a [`BufferScope`]
    /// destroyed (buffers created outside a scope are freed when dropped, uncounted).
    pub fn buffer_counts(&self) -> (u64, u64) {
        (
            self.buffers_created.load(Ordering::Relaxed),
            self.buffers_destroyed.load(Ordering::Relaxed),
        )
    }

    /// A clone of this context whose buffers belong to the returned scope: they are destroyed
    /// when the scope is dropped (the owner of the buffers holds the scope).
    // On wasm32 wgpu's handles are neither Send nor Sync, like every Arc in this struct.
    #[allow(clippy::arc_with_non_send_sync)]
    pub fn scoped(&self) -> (GpuContext, BufferScope) {
        let buffers = Arc::new(Mutex::new(Vec::new()));
        let ctx = GpuContext {
            scope: Some(buffers.clone()),
            ..self.clone()
        };
        let scope = BufferScope {
            buffers,
            destroyed: self.buffers_destroyed.clone(),
        };
        (ctx, scope)
    }

    /// A clone of this context that registers no buffer in a scope (temporary buffers).
    pub fn unscoped(&self) -> GpuContext {
        GpuContext {
            scope: None,
            ..self.clone()
        }
    }

    fn register(&self, buffer: wgpu::Buffer) -> wgpu::Buffer {
        self.objects_created.fetch_add(1, Ordering::Relaxed);
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        if let Some(Ok(mut list)) = self.scope.as_ref().map(|s| s.lock()) {
            list.push(buffer.clone());
        }
        buffer
    }

    #[allow(clippy::disallowed_methods)] // the one counted place that creates buffers
    pub fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.register(self.device.create_buffer(desc))
    }

    /// A buffer holding `contents`.
    #[allow(clippy::disallowed_methods)]
    pub fn create_buffer_init(&self, desc: &wgpu::util::BufferInitDescriptor) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.register(self.device.create_buffer_init(desc))
    }

    #[allow(clippy::disallowed_methods)]
    pub fn create_bind_group(&self, desc: &wgpu::BindGroupDescriptor) -> wgpu::BindGroup {
        self.objects_created.fetch_add(1, Ordering::Relaxed);
        self.device.create_bind_group(desc)
    }

    /// Whether the adapter runs on the CPU (lavapipe, llvmpipe, SwiftShader, WARP).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// One line naming the adapter: name, backend, device type, and the kernels' tiling.
    pub fn adapter_summary(&self) -> String {
        let name = if self.info.name.is_empty() {
            "WebGPU adapter"
        } else {
            &self.info.name
        };
        format!(
            "{name} ({:?}, {:?}), {} tiling, {} KiB workgroup memory",
            self.info.backend,
            self.info.device_type,
            self.tiling,
            self.workgroup_bytes() >> 10
        )
    }

    /// The adapter's limits that matter to the engine, for `bd3lm info`.
    pub fn limits_summary(&self) -> String {
        let l = &self.adapter_limits;
        format!(
            "adapter: max storage binding {} MiB, max buffer {} MiB, {} storage buffers per stage, {} invocations per workgroup, {} KiB workgroup memory (the engine requests WebGPU's defaults: 128 MiB bindings, 8 storage buffers, 256 invocations, 16 KiB)",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size >> 10
        )
    }

    /// The adapter's limits that matter to the engine, as (name, value) figures.
    pub fn limit_figures(&self) -> Vec<(&'static str, u64)> {
        let l = &self.adapter_limits;
        vec![
            (
                "max_storage_buffer_binding_size",
                l.max_storage_buffer_binding_size,
            ),
            ("max_buffer_size", l.max_buffer_size),
            (
                "max_storage_buffers_per_shader_stage",
                l.max_storage_buffers_per_shader_stage as u64,
            ),
            (
                "max_compute_invocations_per_workgroup",
                l.max_compute_invocations_per_workgroup as u64,
            ),
            (
                "max_compute_workgroup_storage_size",
                l.max_compute_workgroup_storage_size as u64,
            ),
            (
                "max_compute_workgroups_per_dimension",
                l.max_compute_workgroups_per_dimension as u64,
            ),
            (
                "min_uniform_buffer_offset_alignment",
                l.min_uniform_buffer_offset_alignment as u64,
            ),
        ]
    }

    /// The adapter's optional features, by name (for `bd3lm info --json`).
    pub fn feature_names(&self) -> Vec<String> {
        let all = self.adapter_features.to_string();
        all.split(" | ")
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Largest storage binding the engine will create on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        MAX_BINDING_BYTES
            .min(self.binding_cap)
            .min(self.limits.max_storage_buffer_binding_size)
            .min(self.limits.max_buffer_size)
    }

    /// Fails if the device was lost or reported an uncaptured error since the last check.
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            let reason = self
                .lost_reason
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            return Err(GpuError::DeviceLost(reason));
        }
        if let Ok(mut list) = self.errors.lock() {
            if let Some(first) = list.first().cloned() {
                list.clear();
                return Err(GpuError::Validation(first));
            }
        }
        Ok(())
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Copies `size` bytes of `src` into a mappable buffer and returns them, awaiting the map.
    pub async fn read_buffer(
        &self,
        src: &wgpu::Buffer,
        staging: &wgpu::Buffer,
        size: u64,
    ) -> Result<Vec<u8>> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, 0, staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.map_read(staging, size).await
    }

    /// Maps `staging` (already filled by submitted work) and returns its first `size` bytes.
    pub async fn map_read(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let slice = staging.slice(..size);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let mapped = rx
            .await
            .map_err(|_| GpuError::Readback("the map callback was dropped".into()));
        self.check()?;
        mapped?.map_err(|e| GpuError::Readback(e.to_string()))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }
}
