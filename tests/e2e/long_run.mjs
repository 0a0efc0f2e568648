// Long run of the page (docs/reliability.md, "Long runs"): E2E_LONG_RUNS (default 200)
// generations on the WebGPU engine (SwiftShader in headless Chromium) with the demo model,
// rotating the four samplers; every 10th run is stopped in mid-block and the next one
// continues it; halfway through, the model is loaded again. Checks:
// - the JS heap (after a forced GC, read through CDP) at the last generation is within
//   10 % (at least 2 MB) of the heap at generation 20, and the wasm memory does not grow
//   between generations on either side of the reload;
// - no GPU buffer, bind group, shader module or pipeline is created per generation (counted
//   by wrapping the GPUDevice methods in the page before it starts);
// - the reload destroys every buffer of the old engine (GPUBuffer.destroy() calls), so the
//   live buffers after it are those of one engine.
// Run through tests/e2e/run.sh with E2E_ONLY=long-run (it builds and serves the page).
// Usage: node long_run.mjs <page URL ending in />; writes tests/e2e/out/long-run.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { within } from './numbers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const require = createRequire(import.meta.url);
const { chromium } = require(path.join(root, 'tools/npm/node_modules/playwright-core'));

const [pageUrl] = process.argv.slice(2);
if (!pageUrl) throw new Error('usage: node long_run.mjs <url>');
const RUNS = Number(process.env.E2E_LONG_RUNS || 200);
const HEAP_SLACK = 0.10;
// The first heap reading: generation 20 (earlier in a short smoke run).
const MARK = Math.max(1, Math.min(20, Math.floor(RUNS / 4)));
// The model is loaded again before generation HALF + 1.
const HALF = Math.floor(RUNS / 2);
const HEAP_SLACK_MIN = 2e6;
const outDir = path.join(here, 'out');
fs.mkdirSync(outDir, { recursive: true });

let failures = 0;
const results = [];
function check(cond, what) {
  const line = `${cond ? 'ok  ' : 'FAIL'} ${what}`;
  results.push(line);
  console.log(line);
  if (!cond) failures++;
}

// Counts what the page asks of WebGPU, from before the page's own scripts run.
const INIT = () => {
  const c = (window.__gpu = { buffers: 0, destroyed: 0, liveBytes: 0, bindGroups: 0, modules: 0, pipelines: 0 });
  addEventListener('TrunkApplicationStarted', (e) => { window.__wasmMemory = e.detail.wasm.memory; });
  if (!self.GPUDevice) return;
  const sizes = new WeakMap();
  const dead = new WeakSet();
  const wrap = (proto, name, count) => {
    const orig = proto[name];
    if (!orig) return;
    proto[name] = function (...args) {
      const made = orig.apply(this, args);
      count(made, args);
      return made;
    };
  };
  wrap(GPUDevice.prototype, 'createBuffer', (b, [desc]) => { c.buffers++; c.liveBytes += desc.size; sizes.set(b, desc.size); });
  wrap(GPUDevice.prototype, 'createBindGroup', () => c.bindGroups++);
  wrap(GPUDevice.prototype, 'createShaderModule', () => c.modules++);
  wrap(GPUDevice.prototype, 'createComputePipeline', () => c.pipelines++);
  wrap(GPUDevice.prototype, 'createComputePipelineAsync', () => c.pipelines++);
  const destroy = GPUBuffer.prototype.destroy;
  GPUBuffer.prototype.destroy = function () {
    if (!dead.has(this)) {
      dead.add(this);
      c.destroyed++;
      c.liveBytes -= sizes.get(this) || 0;
    }
    return destroy.call(this);
  };
};

const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'bd3lm-long-'));
const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
await ctx.addInitScript(INIT);
const page = ctx.pages()[0] || (await ctx.newPage());
page.setDefaultTimeout(600_000);
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
const cdp = await ctx.newCDPSession(page);
await cdp.send('Performance.enable');

// textContent: some of these sit in the closed "Technical notes" disclosure.
const text = async (sel) => (await page.locator(sel).textContent()).trim();
const counts = () => page.evaluate(() => ({ ...window.__gpu }));
async function heap() {
  await cdp.send('HeapProfiler.collectGarbage');
  const usage = await cdp.send('Runtime.getHeapUsage');
  const metrics = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  const wasm = await page.evaluate(() => window.__wasmMemory?.buffer.byteLength || 0);
  return { used: usage.usedSize, total: usage.totalSize, jsHeapUsed: metrics.JSHeapUsedSize, nodes: metrics.Nodes, wasm };
}
async function load() {
  await page.waitForFunction(() => !document.querySelector('#load')?.disabled);
  await page.click('#load');
  await page.waitForFunction(() => ['Model ready.', 'No model loaded.'].includes(document.querySelector('#model-state')?.textContent)
    && !document.querySelector('#load').disabled);
}
const ended = async () => Number(await page.getAttribute('#canvas', 'data-runs-ended'));
async function settings(i, tokens, pace) {
  const sampler = ['first-hitting', 'posterior', 'confidence', 'entropy'][i % 4];
  await page.fill('#tokens', String(tokens));
  await page.fill('#pace', String(pace));
  await page.selectOption('#sampler', sampler);
  if (sampler === 'posterior') await page.fill('#steps', '4');
  await page.setChecked('#random-seed', false);
  await page.fill('#seed', String(1000 + i));
  return sampler;
}

const started = Date.now();
await page.goto(`${pageUrl}?engine=webgpu`);
await page.waitForFunction(() => document.querySelector('#package-costs')?.textContent.includes('Download:'));
const beforeLoad = await counts();
await load();
check((await text('#model-state')) === 'Model ready.' && (await text('#engine')).startsWith('Engine: WebGPU'),
  `the demo model loads on WebGPU: "${(await text('#engine')).slice(0, 70)}"`);
const afterLoad = await counts();
const engineBuffers = afterLoad.buffers - beforeLoad.buffers;
const liveAfterLoad = afterLoad.buffers - afterLoad.destroyed;
console.log(`  first load: ${engineBuffers} buffers (${(afterLoad.liveBytes / 1e6).toFixed(1)} MB live), ${afterLoad.bindGroups} bind groups, ${afterLoad.pipelines} pipelines`);

const marks = {};
const samplers = {};
let stops = 0;
let reload = null;
for (let i = 0; i < RUNS; i++) {
  if (i === HALF) {
    marks.heapBeforeReload = await heap();
    const before = await counts();
    await load();
    const after = await counts();
    reload = {
      destroyed: after.destroyed - before.destroyed,
      created: after.buffers - before.buffers,
      live_before: before.buffers - before.destroyed,
      live_after: after.buffers - after.destroyed,
      live_mb_before: before.liveBytes / 1e6,
      live_mb_after: after.liveBytes / 1e6,
    };
    check((await text('#model-state')) === 'Model ready.', 'the model loads again halfway');
    check(reload.destroyed >= engineBuffers && reload.live_after <= liveAfterLoad,
      `the reload destroyed the old engine's buffers: ${reload.destroyed} destroyed (the engine had ${engineBuffers}), live ${reload.live_before} -> ${reload.live_after} (${reload.live_mb_before.toFixed(1)} -> ${reload.live_mb_after.toFixed(1)} MB)`);
    marks.afterReload = await counts();
  }
  const n = await ended();
  if (i % 10 === 8) {
    // Start a run and stop it while a block still has masks.
    const s = await settings(i, 64, 40);
    samplers[s] = (samplers[s] || 0) + 1;
    await page.click('#start');
    await page.waitForFunction(() => document.querySelector('#canvas .slot.masked'));
    await page.click('#stop');
    await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, n);
    if ((await text('#notice')).includes('Stopped')) stops++;
  } else if (i % 10 === 9) {
    // Continue the stopped text.
    const s = await settings(i, 8, 0);
    samplers[s] = (samplers[s] || 0) + 1;
    await page.click('#continue');
    await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, n);
  } else {
    const s = await settings(i, 8, 0);
    samplers[s] = (samplers[s] || 0) + 1;
    await page.click('#start');
    await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, n);
  }
  const notice = await text('#notice');
  if (!(notice.startsWith('Finished') || notice.startsWith('Stopped') || notice.startsWith('Ended'))) {
    check(false, `generation ${i + 1} ended with "${notice}" ${await text('#error-text').catch(() => '')}`);
    break;
  }
  const done = i + 1;
  if (done === HALF + MARK) marks.heapAfterReload = await heap();
  if (done === MARK) {
    marks.heap20 = await heap();
    marks.at20 = await counts();
  }
  if (done % 20 === 0) console.log(`  ${done}/${RUNS} generations, ${((Date.now() - started) / 1000).toFixed(0)} s`);
}
marks.heapEnd = await heap();
marks.atEnd = await counts();
const wallS = (Date.now() - started) / 1000;

const h20 = marks.heap20;
const hEnd = marks.heapEnd;
const heapBound = Math.max(HEAP_SLACK * h20.used, HEAP_SLACK_MIN);
check(within(hEnd.used - h20.used, heapBound),
  `JS heap after GC: ${(h20.used / 1e6).toFixed(2)} MB at generation ${MARK}, ${(hEnd.used / 1e6).toFixed(2)} MB at ${RUNS} (bound +${(heapBound / 1e6).toFixed(1)} MB)`);
// The wasm memory never shrinks; loading a model again may grow it once (the new model's
// pieces arrive while the allocator holds the old one's freed space in other shapes), so it
// must not grow between generations on either side of the reload.
const hBefore = marks.heapBeforeReload;
const hAfter = marks.heapAfterReload || hEnd;
check(within(hBefore.wasm, h20.wasm) && within(hEnd.wasm, hAfter.wasm),
  `wasm memory flat between generations: ${(h20.wasm / 1e6).toFixed(1)} MB at generation ${MARK}, ${(hBefore.wasm / 1e6).toFixed(1)} MB at ${HALF} (before the reload), ${(hAfter.wasm / 1e6).toFixed(1)} MB at ${Math.min(HALF + MARK, RUNS)}, ${(hEnd.wasm / 1e6).toFixed(1)} MB at ${RUNS}`);
// Per generation: nothing between generation 20 and the reload, nothing after the reload.
const perGen = (a, b) => ({ buffers: b.buffers - a.buffers, bindGroups: b.bindGroups - a.bindGroups, modules: b.modules - a.modules, pipelines: b.pipelines - a.pipelines });
const reloadCounts = marks.afterReload || marks.at20;
const before20 = perGen(afterLoad, marks.at20);
const afterReload = perGen(reloadCounts, marks.atEnd);
check(Object.values(before20).every((v) => v === 0) && Object.values(afterReload).every((v) => v === 0),
  `no GPU object created by generations: first ${MARK} ${JSON.stringify(before20)}, after the reload ${JSON.stringify(afterReload)}`);
check(stops === Math.floor((RUNS + 1) / 10), `${stops} runs stopped in mid-block, each continued by the next`);
check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? ': ' + consoleErrors.slice(0, 3).join(' | ') : ''}`);

const report = { runs: RUNS, heap_mark: MARK, wall_s: wallS, samplers, stops, heap20: h20, heapBeforeReload: hBefore, heapAfterReload: hAfter, heapEnd: hEnd, heap_bound_bytes: heapBound, engine_buffers: engineBuffers, reload, first_load: afterLoad, at20: marks.at20, end: marks.atEnd, ok: failures === 0 };
fs.writeFileSync(path.join(outDir, 'long-run.json'), JSON.stringify(report, null, 1) + '\n');
console.log(JSON.stringify(report));
await ctx.close();
fs.rmSync(userData, { recursive: true, force: true });
console.log(failures ? `\n${failures} check(s) FAILED` : `\nall ${results.length} checks passed in ${wallS.toFixed(0)} s`);
process.exit(failures ? 1 : 0);
