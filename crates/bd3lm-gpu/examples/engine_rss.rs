//! Resident memory of one WGSL engine while it repeats a single kind of operation on the
//! tiny-v512-bs4 fixture: which engine operation the lavapipe growth of docs/reliability.md
//! follows. `cargo run --release -p bd3lm-gpu --example engine_rss -- OP ITERS`, OP one of
//! `commit` (a model call storing a block), `logits` (a model call reading all logits back),
//! `draw` (a first-hitting draw of one row: model call, sampler, 8-byte readback), `reuse`
//! (the same draw reusing the previous model call: the sampler dispatch and readback alone),
//! `profile` (every dispatch of a step submitted alone and waited for, `profile_step`).

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use bd3lm::fixture::Fixture;
    use bd3lm::{DrawRequest, Engine, EngineProbes, Rows};
    use bd3lm_gpu::{GpuContext, GpuEngine, GpuOptions};
    use std::path::PathBuf;

    fn rss_kb() -> u64 {
        bd3lm::long_run::process_memory_bytes("VmRSS").unwrap_or(0) / 1024
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let op = args.first().map_or("commit", String::as_str).to_string();
        let iters: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs4");
        let w = Fixture::from_dir(&dir).expect("fixture loads").weights;
        let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("adapter");
        let mut engine = pollster::block_on(GpuEngine::from_weights(&ctx, &w)).expect("engine");
        let cfg = engine.config().clone();
        let b = cfg.block_size;
        let block: Vec<u32> = (0..b as u32).map(|i| i + 7).collect();
        let masked = vec![cfg.mask_id(); b];
        if op == "kernels" {
            return per_kernel(&mut engine, iters);
        }
        let start = rss_kb();
        let t0 = std::time::Instant::now();
        println!("{op} x {iters}: rss {start} KB");
        for it in 0..iters {
            if engine.cached_tokens() + 2 * b > cfg.model_length {
                engine.reset();
            }
            pollster::block_on(async {
                match op.as_str() {
                    "commit" => engine.commit(&block).await.map(drop),
                    "logits" => engine.logits(&block).await.map(drop),
                    "draw" => engine
                        .draw(&DrawRequest {
                            block: &masked,
                            rows: Rows::One(it % b),
                            nucleus_p: 0.9,
                            uniform_seed: it as u64,
                            mask_prob: None,
                            reuse: false,
                        })
                        .await
                        .map(drop),
                    "reuse" => engine
                        .draw(&DrawRequest {
                            block: &masked,
                            rows: Rows::One(it % b),
                            nucleus_p: 0.9,
                            uniform_seed: it as u64,
                            mask_prob: None,
                            reuse: it > 0,
                        })
                        .await
                        .map(drop),
                    "profile" => engine.profile_step(0, 1).map(drop),
                    other => panic!("unknown op {other}"),
                }
            })
            .expect("op runs");
            if (it + 1) % (iters / 10).max(1) == 0 {
                let now = rss_kb();
                println!(
                    "{:>6}: rss {:>8} KB (+{} KB, {:.1} KB per op) {:.1} s",
                    it + 1,
                    now,
                    now as i64 - start as i64,
                    (now as f64 - start as f64) / (it + 1) as f64,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// Each dispatch of a step submitted alone `iters` times (`profile_step`) while a thread
    /// samples resident memory; the growth over each dispatch's share of the time.
    fn per_kernel(engine: &mut GpuEngine, iters: usize) {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let done = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let t0 = std::time::Instant::now();
        let sampler = {
            let (done, samples) = (done.clone(), samples.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let s = (t0.elapsed().as_secs_f64() * 1000.0, rss_kb());
                    samples.lock().expect("samples").push(s);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        };
        let begin = t0.elapsed().as_secs_f64() * 1000.0;
        let rows = engine.profile_step(0, iters).expect("profile");
        done.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler");
        let samples = samples.lock().expect("samples").clone();
        let rss_at = |ms: f64| {
            samples
                .iter()
                .rev()
                .find(|s| s.0 <= ms)
                .map_or(samples[0].1, |s| s.1)
        };
        let mut at = begin;
        for r in rows {
            let ms = r.ms.unwrap_or(0.0) * iters as f64;
            let grown = rss_at(at + ms) as f64 - rss_at(at) as f64;
            println!(
                "{:>18} layer {:?}: {:>8.1} KB over {iters} dispatches ({:.1} KB each)",
                r.info.kernel,
                r.info.layer,
                grown,
                grown / iters as f64
            );
            at += ms;
        }
    }
}
