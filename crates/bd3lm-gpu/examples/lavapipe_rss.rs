//! A standalone wgpu loop (no bd3lm code) that repeats the same pre-built compute work and
//! prints the process's resident memory: the reproduction of the lavapipe growth in
//! docs/reliability.md ("Long runs of generation").
//!
//! `cargo run --release -p bd3lm-gpu --example lavapipe_rss -- ITERS DISPATCHES [FLAGS]`,
//! FLAGS any of: `dyn` (a uniform binding with a dynamic offset, a different slot per
//! dispatch, as the engine's step table), `write` (`queue.write_buffer` of the uniforms every
//! iteration), `map` (copy to a staging buffer and map it every iteration; otherwise the loop
//! waits with `device.poll`), `vary` (new uniform values every iteration), `split` (one 16-byte
//! `write_buffer` per slot), `loop` (the
//! uniform is a loop bound), `nested` (a uniform-bounded loop inside another, as residual.wgsl), `shared` (workgroup memory and barriers; `big`: 32 KB of it), `indirect` (the grid
//! read from a buffer), `barrier` (each dispatch reads what the
//! previous one wrote), `groups` (a bind group of
//! its own for every dispatch), `submits=N` (split the dispatches over N submissions). The
//! pipeline, buffers and bind group are built once; each iteration records the same passes
//! again (a wgpu command buffer cannot be submitted twice).
// A reproduction without bd3lm's code: it calls wgpu directly, not the counted GpuContext.
#![allow(clippy::disallowed_methods)]

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    /// `{BODY}`: the uniform is used in arithmetic only, or (`loop`) as a loop bound.
    const SHADER: &str = r#"
struct Params { k: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> src: array<u32>;
var<workgroup> tile: array<u32, {TILE}>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    {SHARED}
    if (gid.x < arrayLength(&data)) {
        {BODY}
    }
}
"#;
    const SHARED: &str =
        "tile[li] = data[gid.x]; workgroupBarrier(); data[gid.x] = tile[63u - li]; workgroupBarrier();";
    const PLAIN: &str = "data[gid.x] = data[gid.x] * 1664525u + params.k + src[gid.x];";
    /// The pattern of residual.wgsl: a loop over a uniform count inside a loop bounded by
    /// another uniform.
    const NESTED: &str = "for (var c = li; c < params.pad0; c = c + 64u) { var t = 0u; for (var s = 0u; s < params.pad1; s = s + 1u) { t = t + src[(s * 64u + c) % 4096u]; } data[gid.x] = data[gid.x] + t; }";
    const LOOP: &str =
        "for (var i = 0u; i < params.k % 7u + 1u; i++) { data[gid.x] = data[gid.x] * 1664525u + i; }";
    const SLOT: u64 = 256;
    const WORDS: u64 = 4096;

    fn rss_kb() -> u64 {
        bd3lm::long_run::process_memory_bytes("VmRSS").unwrap_or(0) / 1024
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let iters: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
        let dispatches: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
        let has = |f: &str| args.iter().skip(2).any(|a| a == f);
        let submits: u32 = args
            .iter()
            .find_map(|a| a.strip_prefix("submits=")?.parse().ok())
            .unwrap_or(1)
            .max(1);
        let (dynamic, write, map) = (has("dyn"), has("write"), has("map"));
        // `vary`: every iteration writes new uniform values (implies `write`).
        let (looped, vary) = (has("loop"), has("vary"));
        // `split`: one small `write_buffer` per slot (as the engine writes its step table).
        let split = has("split");
        let write = write || vary || split;
        // `shared`: workgroup memory and barriers; `indirect`: the grid read from a buffer.
        let (shared, indirect) = (has("shared"), has("indirect"));
        let source = SHADER
            .replace(
                "{BODY}",
                if has("nested") {
                    NESTED
                } else if looped {
                    LOOP
                } else {
                    PLAIN
                },
            )
            .replace("{SHARED}", if shared { SHARED } else { "" })
            .replace("{TILE}", if has("big") { "8192" } else { "64" });

        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter =
            pollster::block_on(instance.request_adapter(&Default::default())).expect("an adapter");
        println!("adapter: {:?}", adapter.get_info().name);
        let (device, queue) =
            pollster::block_on(adapter.request_device(&Default::default())).expect("a device");
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(source.clone().into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: dynamic,
                        min_binding_size: wgpu::BufferSize::new(16),
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        // `pipes`: a second pipeline (another module) alternated with the first in each pass.
        let pipes = has("pipes");
        let module2 = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(source.replace("1664525u", "22695477u").into()),
        });
        let pipeline2 = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: Some(&pipeline_layout),
            module: &module2,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let storage = || {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: WORDS * 4,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        // `barrier`: dispatches alternate between writing `data` reading `other` and the
        // reverse, so every dispatch waits for the previous one (a pipeline barrier), as the
        // engine's chained kernels do; otherwise both read `constant`, never written.
        let barrier = has("barrier");
        let (data, other, constant) = (storage(), storage(), storage());
        let slots = dispatches.max(1) as u64;
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: SLOT * slots,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let grid = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 16,
            usage: wgpu::BufferUsages::INDIRECT | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(
            &grid,
            0,
            bytemuck::cast_slice(&[(WORDS / 64) as u32, 1, 1, 0]),
        );
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let make_group = |k: u32| {
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: if barrier && k % 2 == 1 { &other } else { &data }
                            .as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: match (barrier, k % 2) {
                            (false, _) => &constant,
                            (true, 0) => &other,
                            _ => &data,
                        }
                        .as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: 0,
                            size: wgpu::BufferSize::new(16),
                        }),
                    },
                ],
            })
        };
        // `groups`: a bind group of its own for every dispatch (as the engine has), built once.
        let groups = has("groups");
        let count = if groups {
            dispatches.max(1)
        } else if barrier {
            2
        } else {
            1
        };
        let bind_groups: Vec<wgpu::BindGroup> = (0..count).map(make_group).collect();
        // Every slot: k = its index, then the nested loop's bounds (256 columns, 2 splits).
        let slot_words: Vec<u32> = (0..slots * SLOT / 4)
            .map(|i| match i % (SLOT / 4) {
                1 => 256,
                2 => 2,
                _ => i as u32,
            })
            .collect();
        queue.write_buffer(&params, 0, bytemuck::cast_slice(&slot_words));
        let per_submit = dispatches.div_ceil(submits).max(1);
        let start = rss_kb();
        println!(
            "iters {iters} dispatches {dispatches} submits {submits} dyn {dynamic} write {write} vary {vary} loop {looped} shared {shared} indirect {indirect} map {map}; rss {} KB",
            start
        );
        let t0 = std::time::Instant::now();
        for it in 0..iters {
            if write {
                let words: Vec<u32> = if vary {
                    slot_words.iter().map(|w| w + it as u32 * 13).collect()
                } else {
                    slot_words.clone()
                };
                if split {
                    for (k, slot) in words.chunks(SLOT as usize / 4).enumerate() {
                        queue.write_buffer(
                            &params,
                            k as u64 * SLOT,
                            bytemuck::cast_slice(&slot[..4]),
                        );
                    }
                } else {
                    queue.write_buffer(&params, 0, bytemuck::cast_slice(&words));
                }
            }
            let mut d = 0;
            while d < dispatches {
                let mut enc = device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&pipeline);
                    for k in d..(d + per_submit).min(dispatches) {
                        if pipes {
                            pass.set_pipeline(if k % 2 == 0 { &pipeline } else { &pipeline2 });
                        }
                        let offsets = [k * SLOT as u32];
                        let group = &bind_groups[k as usize % bind_groups.len()];
                        pass.set_bind_group(0, group, if dynamic { &offsets } else { &[] });
                        if indirect {
                            pass.dispatch_workgroups_indirect(&grid, 0);
                        } else {
                            pass.dispatch_workgroups((WORDS / 64) as u32, 1, 1);
                        }
                    }
                }
                d += per_submit;
                if d >= dispatches && map {
                    enc.copy_buffer_to_buffer(&data, 0, &staging, 0, 64);
                }
                queue.submit([enc.finish()]);
            }
            if map {
                let slice = staging.slice(..);
                slice.map_async(wgpu::MapMode::Read, |r| r.expect("map"));
                device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .expect("poll");
                let _ = slice.get_mapped_range().expect("mapped").to_vec();
                staging.unmap();
            } else {
                device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .expect("poll");
            }
            if (it + 1) % (iters / 10).max(1) == 0 {
                let now = rss_kb();
                println!(
                    "iter {:>6}: rss {:>8} KB (+{} KB, {:.2} KB per iteration, {:.3} KB per dispatch) {:.1} s",
                    it + 1,
                    now,
                    now as i64 - start as i64,
                    (now as f64 - start as f64) / (it + 1) as f64,
                    (now as f64 - start as f64) / ((it + 1) as f64 * dispatches as f64),
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    }
}
