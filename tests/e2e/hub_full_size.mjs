// Manual check (docs/models.md): the full-size released-shape checkpoint loaded by Hub id
// through the emulator in headless Chromium: download + conversion in the page, time to
// "Model ready", time to the first token, peak JS + wasm memory (CDP), long tasks.
// Usage: node hub_full_size.mjs <page URL> <hub URL> <id> <engine: webgpu|cpu> [tokens]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { WASM_MEMORY_INIT, startMemorySampler, mb } from './memory.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const require = createRequire(import.meta.url);
const { chromium } = require(path.join(root, 'tools/npm/node_modules/playwright-core'));
const [pageUrl, hubUrl, id, engine = 'webgpu', tokens = '4'] = process.argv.slice(2);
if (!pageUrl || !hubUrl || !id) throw new Error('usage: node hub_full_size.mjs <page URL> <hub URL> <id> [engine] [tokens]');

const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'bd3lm-hub-full-'));
const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
await ctx.addInitScript(WASM_MEMORY_INIT);
await ctx.addInitScript(() => {
  window.__longTasks = [];
  new PerformanceObserver((l) => l.getEntries().forEach((t) => window.__longTasks.push(t.duration)))
    .observe({ type: 'longtask', buffered: true });
});
const page = ctx.pages()[0];
page.setDefaultTimeout(3_600_000);
page.on('console', (m) => { if (process.env.VERBOSE || /bd3lm: (model ready|.*converted)/.test(m.text())) console.log(`  [console] ${m.text()}`); });
// textContent: some of these sit in the closed "Technical notes" disclosure.
const text = async (sel) => (await page.locator(sel).textContent()).trim();

await page.goto(`${pageUrl}?hub=${encodeURIComponent(hubUrl)}&engine=${engine}&model=${encodeURIComponent(id)}`);
await page.waitForFunction(() => /downloaded once|stored in this browser/.test(document.querySelector('#package-costs')?.textContent || '')
  || document.querySelector('#error-text')?.textContent);
const early = await page.locator('#error-text').innerText().catch(() => '');
if (early) {
  console.log(`FAIL the model cannot be fetched: ${early}`);
  await ctx.close();
  process.exit(1);
}
console.log(`statement: ${await text('#package-costs')}`);
const sampler = await startMemorySampler(page, 200);
const t0 = Date.now();
await page.click('#load');
let last = '';
const watch = setInterval(async () => {
  const p = await page.locator('#progress-text').innerText().catch(() => '');
  if (p && p !== last && Date.now() % 10 < 5) console.log(`  ${p} | ${await page.locator('#progress .activity').innerText().catch(() => '')}`);
  last = p;
}, 2000);
await page.waitForFunction(() => ['Model ready.', 'No model loaded.'].includes(document.querySelector('#model-state')?.textContent)
  && !document.querySelector('#load').disabled);
clearInterval(watch);
const readyMs = Date.now() - t0;
const loadPeak = await sampler.stop();
console.log(`state: ${await text('#model-state')} ${await page.locator('#error-text').innerText().catch(() => '')}`);
console.log(`report: ${await text('#load-report').catch(() => '')}`);
console.log(`ready after ${(readyMs / 1000).toFixed(1)} s; peak JS + wasm memory while loading: ${mb(loadPeak.total)} (JS heap ${mb(loadPeak.jsHeap)}, array buffers ${mb(loadPeak.backing)}, wasm ${mb(loadPeak.wasm)})`);
// A model that did not load measured nothing: say so and fail (Start would wait forever).
if ((await text('#model-state')) !== 'Model ready.') {
  console.log('FAIL the model did not load');
  await ctx.close();
  fs.rmSync(userData, { recursive: true, force: true });
  process.exit(1);
}

await page.fill('#tokens', tokens);
await page.fill('#pace', '0');
const t1 = Date.now();
await page.click('#start');
// The first generated token: a revealed slot of the first block (the prompt is already text).
await page.waitForFunction(() => document.querySelectorAll('#canvas .slot.revealed').length > 0, null, { polling: 50 });
const firstTokenMs = Date.now() - t1;
await page.waitForFunction(() => Number(document.querySelector('#canvas').dataset.runsEnded) > 0);
const long = await page.evaluate(() => window.__longTasks);
console.log(`first token ${(firstTokenMs / 1000).toFixed(1)} s after Start (${((readyMs + firstTokenMs) / 1000).toFixed(1)} s after Load); run: ${await text('#stats')}`);
console.log(`long tasks: ${long.length}, longest ${Math.max(0, ...long).toFixed(0)} ms`);
const generated = Number(await page.locator('#stat-tokens').innerText().catch(() => '0'));
if (!(generated > 0)) console.log(`FAIL the run generated nothing (${generated} tokens)`);
await page.screenshot({ path: path.join(here, 'out', `hub-full-size-${engine}.png`), fullPage: true });
await ctx.close();
fs.rmSync(userData, { recursive: true, force: true });
process.exit(generated > 0 ? 0 : 1);
