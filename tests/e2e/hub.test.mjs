// End-to-end test of loading a model by Hugging Face Hub id in the page, against the loopback
// Hub emulator (scripts/hub-emulator.py) through `?hub=`. Run by tests/e2e/run.sh.
// Usage: node hub.test.mjs <page URL ending in /> <emulator URL> <reference package dir>
// The emulator serves the released-layout fixture gpt2vocab-bs8 as
// kuleshov-group/bd3lm-owt-block_size8 and org/copy, a private repo org/private and a GPT-2
// (not BD3-LM) repo openai-community/gpt2; the reference package is `bd3lm quantize`'s q8
// output for the same checkpoint.
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

const [pageUrl, hubUrl, referenceDir] = process.argv.slice(2);
if (!pageUrl || !hubUrl || !referenceDir) throw new Error('usage: node hub.test.mjs <page url> <hub url> <reference package>');
const RELEASED = 'kuleshov-group/bd3lm-owt-block_size8';
const outDir = path.join(here, 'out');
fs.mkdirSync(outDir, { recursive: true });

const results = [];
let failures = 0;
function check(cond, what) {
  results.push(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
  if (!cond) failures++;
}

// The emulator's control endpoints.
const emulator = {
  faults: (f) => fetch(`${hubUrl}/_emulator/faults`, { method: 'POST', body: JSON.stringify(f) }),
  reset: () => fetch(`${hubUrl}/_emulator/reset`, { method: 'POST' }),
  log: async () => (await (await fetch(`${hubUrl}/_emulator/log`)).json()).filter((e) => !e.path.startsWith('/_emulator')),
};
const weightRequests = (log) => log.filter((e) => e.path.startsWith('/cdn/') || e.path.endsWith('/model.safetensors'));

const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'bd3lm-hub-e2e-'));
const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
await ctx.addInitScript(WASM_MEMORY_INIT);
const page = ctx.pages()[0] || (await ctx.newPage());
page.setDefaultTimeout(300_000);
const consoleLog = [];
page.on('console', (m) => {
  consoleLog.push(m.text());
  if (process.env.E2E_VERBOSE) console.log(`  [console] ${m.text()}`);
});
page.on('pageerror', (e) => consoleLog.push(`pageerror: ${e.message}`));

// textContent: some of these sit in the closed "Technical notes" disclosure.
const text = async (sel) => (await page.locator(sel).textContent()).trim();
const idle = () => page.waitForFunction(() => {
  const state = document.querySelector('#model-state')?.textContent;
  return ['Model ready.', 'No model loaded.'].includes(state) && !document.querySelector('#check').disabled;
});
async function inspect(value) {
  await idle();
  if (!(await page.locator('#package-url').isVisible())) await page.selectOption('#model-menu', 'custom');
  await page.fill('#package-url', value);
  await page.click('#check');
  await page.waitForFunction(() => document.querySelector('#model-state')?.textContent !== 'Reading the manifest…');
  await idle();
}
async function load() {
  await page.waitForFunction(() => !document.querySelector('#load')?.disabled);
  // A load from storage can be over before a poll sees it: watch the state's text change.
  await page.evaluate(() => {
    window.__sawLoading = false;
    const state = document.querySelector('#model-state');
    new MutationObserver(() => {
      if (state.textContent === 'Loading the model…') window.__sawLoading = true;
    }).observe(state, { childList: true, characterData: true, subtree: true });
  });
  await page.click('#load');
  await page.waitForFunction(() => window.__sawLoading || document.querySelector('#error-text')?.textContent);
  await idle();
}
async function settingsForHub() {
  await page.fill('#prompt', 'Hello');
  await page.fill('#tokens', '16');
  await page.fill('#pace', '0');
  await page.setChecked('#random-seed', false);
  await page.fill('#seed', '3');
}
async function generateText() {
  const ended = Number(await page.getAttribute('#canvas', 'data-runs-ended'));
  await page.click('#start');
  await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, ended);
  return page.evaluate(() => [...document.querySelectorAll('#canvas .chunk')].map((e) => e.textContent).join(''));
}
const errorText = async () => (await page.locator('#error').isHidden()) ? '' : text('#error-text');
async function cachedUrls(fragment) {
  return page.evaluate(async (fragment) => {
    const out = [];
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const req of await cache.keys()) {
        // The remembered commit of a revision (refs/) is not part of a package.
        if (req.url.includes(fragment) && !req.url.includes('/refs/')) out.push(`${name}: ${req.url}`);
      }
    }
    return out;
  }, fragment);
}

// 1. Choosing a released checkpoint says what will happen, from the Hub's file list.
await page.goto(`${pageUrl}?hub=${encodeURIComponent(hubUrl)}&engine=webgpu`);
await idle();
await emulator.reset();
await page.selectOption('#model-menu', RELEASED);
await page.waitForFunction(() => document.querySelector('#package-costs')?.textContent.includes('downloaded once'));
const costs = await text('#package-costs');
const checkpointBytes = fs.statSync(path.join(root, 'tests/fixtures/gpt2vocab-bs8/model.safetensors')).size;
const configBytes = fs.statSync(path.join(root, 'tests/fixtures/gpt2vocab-bs8/config.json')).size;
const expectedDownload = `${((checkpointBytes + configBytes) / 1e6).toFixed(1)} MB downloaded once`;
check(costs.includes(expectedDownload) && /kept as a [\d.]+ MB q8 package in this browser/.test(costs),
  `the statement before loading: "${costs}"`);
check(costs.includes("GPT-2's, shipped with this page"), 'says the GPT-2 tokenizer will be used');
check(/Storage: [\d.]+ \w?B of [\d.]+ \w?B used/.test(costs), 'shows the storage estimate');
check(weightRequests(await emulator.log()).length === 0, 'nothing big was downloaded before Load');
// With the demo still loaded, the button names what loading the chosen checkpoint costs.
check((await text('#load')).startsWith('Download and convert'), `the Load button: "${await text('#load')}"`);
check((await text('#package-facts')).includes('commit'), `facts: "${await text('#package-facts')}"`);

// 2. Load: streamed with one cut connection (resumed with a Range request), converted while
//    it arrives, verified, stored; WebGPU engine; peak memory through CDP.
// (A pause per 256 kB so the progress can be watched.)
await emulator.faults({ cut_after: 5_000_000, cut_times: 1, delay_ms: 20 });
const progressSeen = [];
const sampler = await startMemorySampler(page);
const watch = setInterval(async () => {
  try {
    progressSeen.push(`${await page.locator('#progress-text').innerText({ timeout: 100 })} | ${await page.locator('#progress .activity').innerText({ timeout: 100 })}`);
  } catch (_) { /* repaint */ }
}, 150);
let t0 = Date.now();
await load();
const loadMs = Date.now() - t0;
clearInterval(watch);
const peak = await sampler.stop();
check((await text('#model-state')) === 'Model ready.', `model ready after download and conversion in ${loadMs} ms (${await errorText()})`);
check((await text('#engine')).includes('WebGPU'), `on the WebGPU engine: "${await text('#engine')}"`);
const log1 = await emulator.log();
const ranges = weightRequests(log1).map((e) => e.range);
// Chromium may drop bytes that were in flight when the connection broke: the resume starts
// where the page's data ended, at or before the cut.
const resumedAt = ranges.map((r) => /^bytes=(\d+)-$/.exec(r || '')?.[1]).filter(Boolean).map(Number);
check(resumedAt.length === 1 && resumedAt[0] > 0 && resumedAt[0] <= 5_000_000,
  `the cut download resumed with Range: ${JSON.stringify(ranges)}`);
check(consoleLog.some((l) => l.includes('resuming with a Range request')), 'the page logged the resume');
check(progressSeen.some((p) => /of [\d.]+ MB/.test(p) && /converting backbone\./.test(p)),
  `progress showed bytes and the conversion stage: ${JSON.stringify(progressSeen.slice(-3))}`);
check(progressSeen.some((p) => /MB\/s/.test(p)), 'progress showed the rate');
console.log(`  peak JS + wasm memory while loading (WebGPU): ${mb(peak.total)} (JS heap ${mb(peak.jsHeap)}, array buffers ${mb(peak.backing)}, wasm ${mb(peak.wasm)}, ${peak.samples} samples)`);
results.push(`info peak memory while loading ${mb(peak.total)}; load ${loadMs} ms`);
check(peak.total > 0 && peak.total <= 400e6, `peak JS + wasm memory ≤ 400 MB: ${mb(peak.total)}`);
check((await text('#load-report')).includes('converted it to q8'), `report: "${await text('#load-report')}"`);

// 3. Same bytes as `bd3lm quantize`: the stored manifest (every shard's SHA-256) and files.
const stored = await page.evaluate(async () => {
  const cache = await caches.open('bd3lm-packages-v1');
  const out = {};
  for (const req of await cache.keys()) {
    if (!req.url.includes('/hub-packages/')) continue;
    const bytes = new Uint8Array(await (await cache.match(req)).arrayBuffer());
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    out[req.url.split('/').pop()] = { bytes: bytes.length, sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') };
  }
  out.manifestText = await (await cache.match([...(await cache.keys())].find((r) => r.url.endsWith('/q8/manifest.json')))).text();
  return out;
});
const referenceManifest = fs.readFileSync(path.join(referenceDir, 'manifest.json'), 'utf8');
check(stored.manifestText === referenceManifest, 'the stored manifest.json equals bd3lm quantize\'s byte for byte');
const refManifest = JSON.parse(referenceManifest);
check([refManifest.tokenizer, ...refManifest.files].every((f) => stored[f.file]?.sha256 === f.sha256),
  `every stored file has the SHA-256 of bd3lm quantize's (${refManifest.files.length} shards + tokenizer)`);
check((await cachedUrls('bd3lm-staging')).length === 0 && (await page.evaluate(async () =>
  (await (await caches.open('bd3lm-staging-v1')).keys()).length)) === 0, 'the staging cache is empty');

// 4. It generates.
await page.fill('#tokens', '8');
await page.fill('#pace', '0');
const ended = Number(await page.getAttribute('#canvas', 'data-runs-ended'));
t0 = Date.now();
await page.click('#start');
await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, ended);
const generated = await page.evaluate(() => [...document.querySelectorAll('#canvas .chunk')].map((e) => e.textContent).join(''));
check(generated.length > 0, `generated on WebGPU in ${Date.now() - t0} ms: "${generated.slice(0, 80)}"`);
await page.screenshot({ path: path.join(outDir, 'hub-loaded.png'), fullPage: true });

// 5. Next visit: the stored package, no download, no conversion (CPU engine this time).
await emulator.reset();
// (Opened with ?model=: through the menu, the demo would have loaded by itself first and the
// button would offer to reload it.)
await page.goto(`${pageUrl}?hub=${encodeURIComponent(hubUrl)}&model=${RELEASED}`);
await idle();
await page.waitForFunction(() => document.querySelector('#package-costs')?.textContent.includes('stored in this browser'));
check((await text('#load')).includes('stored'), `load button: "${await text('#load')}"`);
await load();
check((await text('#model-state')) === 'Model ready.', `reloaded from storage (${await errorText()})`);
check(/from the browser cache, 0 from the network/.test(await text('#load-report')), `report: "${await text('#load-report')}"`);
const log2 = await emulator.log();
check(weightRequests(log2).length === 0 && log2.every((e) => e.path.startsWith('/api/')),
  `second visit asked the Hub only for the commit: ${JSON.stringify(log2.map((e) => e.path))}`);

// 6. Offline (the Hub unreachable): the stored model still loads.
await page.goto(`${pageUrl}?hub=${encodeURIComponent('http://127.0.0.1:1')}&model=${RELEASED}`);
await idle();
check((await text('#package-facts')).includes('the Hub did not answer'), `offline: "${await text('#package-facts')}"`);
await load();
check((await text('#model-state')) === 'Model ready.', 'offline: loaded from storage');

// 7. Errors, each in words.
if (!(await page.locator('#package-url').isVisible())) await page.selectOption('#model-menu', 'custom');
await page.fill('#package-url', 'kuleshov-group/bd3lm-owt-block_size16');
await page.click('#check');
await page.waitForFunction(() => document.querySelector('#error-text')?.textContent.length > 0);
check((await errorText()).includes('could not be reached'), `no network: "${await errorText()}"`);
await page.goto(`${pageUrl}?hub=${encodeURIComponent(hubUrl)}`);
await idle();
const expectError = async (id, needles, what) => {
  await inspect(id);
  const e = await errorText();
  check(needles.every((n) => e.includes(n)), `${what}: "${e}"`);
};
await expectError('kuleshov-group/no-such-model', ['was not found', '404'], 'unknown id');
await expectError('org/private', ['needs a login', '401', 'private or gated'], 'private repo');
await expectError('openai-community/gpt2', ['is not a BD3-LM model', 'model_type "gpt2"'], 'not a BD3-LM config');
await emulator.faults({ no_cors: true });
await expectError('org/copy', ['could not be reached', 'CORS'], 'CORS failure');
await emulator.reset();

// Hash mismatch: the bytes are discarded, nothing is stored.
await inspect('org/copy');
await emulator.faults({ corrupt_at: 7_000_000, corrupt_times: 1 });
await load();
check((await errorText()).includes('is corrupt') && (await errorText()).includes('SHA-256'), `hash mismatch: "${await errorText()}"`);
check((await text('#model-state')) === 'No model loaded.', 'no model after a hash mismatch');
check((await cachedUrls('/org/copy/')).length === 0, `nothing stored after the mismatch: ${await cachedUrls('/org/copy/')}`);

// An interrupted download that cannot be resumed: nothing is stored either.
await emulator.reset();
await emulator.faults({ cut_after: 1_000_000, cut_times: 100 });
await inspect('org/copy');
await load();
check((await errorText()).includes('broke off'), `interrupted: "${await errorText()}"`);
check((await cachedUrls('/org/copy/')).length === 0, 'nothing stored after the interruption');
await emulator.reset();

// Quota exceeded, for real: CDP Storage.overrideQuotaForOrigin makes the browser refuse the
// package's files (Chromium's estimate() does not reflect the override, so the refusal comes
// from the Cache API write): a clear error, nothing stored.
const cdp = await ctx.newCDPSession(page);
const origin = new URL(pageUrl).origin;
await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 2_000_000 });
await inspect('org/copy');
await load();
check((await errorText()).includes('Not enough storage'), `quota exceeded while storing: "${await errorText()}"`);
check((await cachedUrls('/org/copy/')).length === 0, 'nothing stored when the quota is exceeded');
await cdp.send('Storage.overrideQuotaForOrigin', { origin });
// The check before loading, with estimate() reporting a nearly full quota (stubbed in the page).
await page.evaluate(() => { navigator.storage.estimate = async () => ({ usage: 9e9, quota: 9.001e9 }); });
await inspect('org/copy');
check((await text('#package-costs')).includes('Free some space'), `quota warning before loading: "${await text('#package-costs')}"`);
await emulator.reset();
await load();
check((await errorText()).includes('Not enough storage'), `quota checked before the download: "${await errorText()}"`);
check(weightRequests(await emulator.log()).length === 0, 'no download when the quota is too small');

// 8. A repo holding a package (manifest.json + shards, as `bd3lm quantize` writes): the
//    statement names the package, only its files move (each checked against the manifest's
//    SHA-256, the listing against the Hub's lfs.oid first), cached; the second load downloads
//    nothing; a shard changed after its manifest, or damaged on the way, is refused.
await page.goto(`${pageUrl}?hub=${encodeURIComponent(hubUrl)}`);
await idle();
await emulator.reset();
const packageBytes = fs.readdirSync(referenceDir).filter((f) => f !== 'manifest.json')
  .reduce((sum, f) => sum + fs.statSync(path.join(referenceDir, f)).size, 0);
await inspect('org/bs8-q8');
const pkgCosts = await text('#package-costs');
check(pkgCosts.startsWith(`${(packageBytes / 1e6).toFixed(1)} MB q8 package downloaded once`), `package repo statement: "${pkgCosts}"`);
check(weightRequests(await emulator.log()).length === 0, 'nothing big moved before Load');
await emulator.reset();
await load();
check((await text('#model-state')) === 'Model ready.', `package repo loaded (${await errorText()})`);
const pkgLog = (await emulator.log()).map((e) => e.path);
const shardFiles = fs.readdirSync(referenceDir).filter((f) => f.endsWith('.safetensors'));
check(pkgLog.every((p) => !p.endsWith('/config.json') && !p.endsWith('/model.safetensors'))
  && pkgLog.filter((p) => p.startsWith('/cdn/')).length === shardFiles.length,
  `only the package's files were downloaded: ${JSON.stringify(pkgLog)}`);
check(/0 file\(s\) from the browser cache, \d+ from the network/.test(await text('#load-report')), `report: "${await text('#load-report')}"`);
await settingsForHub();
const pkgText = await generateText();
check(pkgText.startsWith('Hello') && pkgText.length > 'Hello'.length, `generated with the package repo: "${pkgText.slice(0, 60)}"`);
await page.goto(`${pageUrl}?hub=${encodeURIComponent(hubUrl)}`);
await idle();
await emulator.reset();
await inspect('org/bs8-q8');
check((await text('#package-costs')).includes('is stored in this browser'), `second visit: "${await text('#package-costs')}"`);
await load();
check(/from the browser cache, 0 from the network/.test(await text('#load-report')), `second load from the cache: "${await text('#load-report')}"`);
const pkgLog2 = (await emulator.log()).map((e) => e.path);
check(pkgLog2.every((p) => p.startsWith('/api/') && !p.includes('/tree/')), `second load asked the Hub only for the commit: ${JSON.stringify(pkgLog2)}`);
await settingsForHub();
check(await generateText() === pkgText, 'the same text from the cached package');
await emulator.reset();
await expectError('org/bs8-q8-tampered', ['weights-00000.safetensors', "manifest.json says"], 'a shard changed after its manifest');
check(weightRequests(await emulator.log()).length === 0, 'nothing downloaded from a listing that disagrees with its manifest');
await page.evaluate(async () => { for (const k of await caches.keys()) await caches.delete(k); });
// A fresh page: the old one still holds its handle on the deleted cache.
await page.goto(`${pageUrl}?hub=${encodeURIComponent(hubUrl)}`);
await idle();
await emulator.reset();
await emulator.faults({ corrupt_at: 1000, corrupt_times: 2 });
await inspect('org/bs8-q8');
await load();
check(/weights-\d+\.safetensors is corrupt/.test(await errorText()), `a shard damaged on the way is refused: "${await errorText()}"`);
check((await text('#model-state')) === 'No model loaded.', 'no model from a damaged shard');
await emulator.reset();

check(!consoleLog.some((l) => l.startsWith('pageerror') || l.includes('panicked')), 'no panic or page error');
fs.writeFileSync(path.join(outDir, 'hub-results.txt'), results.join('\n') + '\n');
await ctx.close();
fs.rmSync(userData, { recursive: true, force: true });
console.log(failures ? `hub e2e: ${failures} check(s) failed` : `hub e2e: all ${results.filter((r) => r.startsWith('ok')).length} checks passed`);
process.exit(failures ? 1 : 0);
