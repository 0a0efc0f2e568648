// The manual full-size check (tests/e2e/full-size-check.sh): load a ~170 MB package from
// ./full/ into the page on the chosen engine, generate a few tokens, and report sizes,
// timings, the page's peak wasm memory and main-thread long tasks. With a 4th argument (worker
// counts, e.g. `1,2`) the CPU engine runs once per count (`?workers=N`; the page must be
// served cross-origin isolated, as full-size-check.sh does) and the step times are compared.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { chromium } = require(path.join(here, '../../tools/npm/node_modules/playwright-core'));
const [pageUrl, engine, tokens, workerList] = process.argv.slice(2);
if (!pageUrl || !engine || !tokens) throw new Error('usage: node full_size.mjs <page URL> <webgpu|cpu> <tokens> [worker counts, e.g. 1,2]');
const workerCounts = workerList ? workerList.split(',').map(Number) : [null];
// Non-zero exit when the model does not load or the run generates nothing: the docs quote
// this check's figures, so a failed load must never read as a success.
let failed = 0;
const fail = (what) => { console.log(`FAIL ${what}`); failed++; };

const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'bd3lm-full-'));
const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
await ctx.addInitScript(() => {
  window.__full = { longTasks: [], peakWasm: 0, logs: [] };
  new PerformanceObserver((l) => l.getEntries().forEach((t) => window.__full.longTasks.push({ start: t.startTime, duration: t.duration })))
    .observe({ type: 'longtask', buffered: true });
  const log = console.log.bind(console);
  console.log = (...args) => { window.__full.logs.push({ t: performance.now(), msg: String(args[0]).slice(0, 60) }); log(...args); };
  addEventListener('TrunkApplicationStarted', (e) => {
    const memory = e.detail.wasm.memory;
    setInterval(() => { window.__full.peakWasm = Math.max(window.__full.peakWasm, memory.buffer.byteLength); }, 50);
  });
});
const page = ctx.pages()[0];
page.setDefaultTimeout(3_600_000);
page.on('console', (m) => console.log(`  [console] ${m.text()}`));
page.on('pageerror', (e) => console.log(`  [pageerror] ${e.message}`));
// textContent: some of these sit in the closed "Technical notes" disclosure.
const text = async (sel) => (await page.locator(sel).textContent()).trim();

const stepMs = {};
let t0;
for (const workers of workerCounts) {
  if (workers) console.log(`\n=== ${workers} worker(s) ===`);
  await page.goto(`${pageUrl}?engine=${engine}${workers ? `&workers=${workers}` : ''}`);
  await page.evaluate(() => { window.__full.longTasks = []; });
  await page.waitForFunction(() => document.querySelector('#package-costs')?.textContent.includes('Download:'));
  if (!(await page.locator('#package-url').isVisible())) await page.selectOption('#model-menu', 'custom');
  await page.fill('#package-url', 'full/');
  await page.click('#check');
  await page.waitForFunction(() => document.querySelector('#package-facts')?.textContent.includes('parameters')
    || document.querySelector('#error-text')?.textContent);
  console.log(`facts: ${await text('#package-facts')}\ncosts: ${await text('#package-costs')}`);
  const checkError = await page.locator('#error-text').innerText().catch(() => '');
  if (checkError) {
    fail(`the package cannot be read: ${checkError}`);
    break;
  }
  t0 = Date.now();
  await page.click('#load');
  await page.waitForFunction(() => ['Model ready.', 'No model loaded.'].includes(document.querySelector('#model-state')?.textContent)
    && !document.querySelector('#load').disabled);
  const loadMs = Date.now() - t0;
  console.log(`state: ${await text('#model-state')} after ${loadMs} ms\nengine: ${await text('#engine')}\nreport: ${await text('#load-report')}`);
  const error = await page.locator('#error-text').innerText().catch(() => '');
  if (error) console.log(`error: ${error}`);
  const peakAfterLoad = await page.evaluate(() => window.__full.peakWasm);
  console.log(`peak wasm memory after load: ${(peakAfterLoad / 1e6).toFixed(1)} MB`);
  if ((await text('#model-state')) !== 'Model ready.') fail(`the model did not load: ${error || await text('#model-state')}`);
  else {
    await page.fill('#tokens', tokens);
    await page.fill('#pace', '0');
    t0 = Date.now();
    const ended = Number(await page.getAttribute('#canvas', 'data-runs-ended'));
    await page.click('#start');
    await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, ended);
    const stats = Object.fromEntries(await Promise.all(['forwards-per-s', 'tokens-per-s', 'forwards', 'tokens', 'first-block', 'longest-step']
      .map(async (k) => [k, await text(`#stat-${k}`)])));
    console.log(`run: ${Date.now() - t0} ms, ${await text('#notice')} ${JSON.stringify(stats)}`);
    if (!(await text('#notice')).startsWith('Finished') || !(Number(stats.tokens) > 0)) fail(`the run generated nothing: ${await text('#notice')}`);
    else stepMs[workers] = 1000 / Number(stats['forwards-per-s']);
    console.log(`text: ${JSON.stringify((await text('#canvas')).slice(0, 200))}`);
  }
  const full = await page.evaluate(() => window.__full);
  const durations = full.longTasks.map((t) => t.duration);
  console.log(`peak wasm memory: ${(full.peakWasm / 1e6).toFixed(1)} MB; long tasks: ${durations.length}, longest ${Math.max(0, ...durations).toFixed(0)} ms`);
  for (const t of full.longTasks) {
    const before = full.logs.filter((l) => l.t <= t.start).pop();
    console.log(`  long task ${t.duration.toFixed(0)} ms at ${t.start.toFixed(0)} ms, after "${before ? before.msg : '(page start)'}"`);
  }
  await page.screenshot({ path: path.join(here, 'out', `full-size-${engine}${workers ? `-${workers}w` : ''}.png`), fullPage: true });
}
if (workerCounts.length > 1) {
  const base = stepMs[workerCounts[0]];
  for (const w of workerCounts.slice(1)) {
    if (!(w in stepMs) || base === undefined) continue;
    console.log(`step (model call + draw) with ${w} workers: ${stepMs[w].toFixed(1)} ms = ${(stepMs[w] / base).toFixed(2)}x the step with ${workerCounts[0]} (${base.toFixed(1)} ms)`);
  }
}
await ctx.close();
fs.rmSync(userData, { recursive: true, force: true });
if (failed) console.log(`${failed} check(s) FAILED`);
process.exit(failed ? 1 : 0);
