// End-to-end test of the web demo (run through tests/e2e/run.sh, which builds and serves it).
// Usage: node web.test.mjs <page URL ending in /> <port>
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
const { axeSerious, outOfView, sidewaysAt, tabOrder, inOrder, recordLiveRegions, liveChanges, DESKTOP, PHONE } =
  await import('./a11y.mjs');

const [pageUrl, port] = process.argv.slice(2);
if (!pageUrl || !port) throw new Error('usage: node web.test.mjs <url> <port>');
const outDir = path.join(here, 'out');
// Screenshots go to tests/e2e/out/; the two shown in the README and docs/web.md are copied
// to docs/ only on request (E2E_UPDATE_DOCS=1), so a test run never rewrites committed files.
const docsDir = path.join(root, 'docs');
const updateDocs = process.env.E2E_UPDATE_DOCS === '1';
fs.mkdirSync(outDir, { recursive: true });
async function docsScreenshot(name, fullPage = true) {
  const file = path.join(outDir, name);
  await page.screenshot({ path: file, fullPage });
  if (updateDocs) fs.copyFileSync(file, path.join(docsDir, name));
}
// Issue 14: no main-thread task over 50 ms during generation (the CPU engine runs in a Web Worker).
const LONG_TASK_LIMIT_MS = Number(process.env.E2E_LONG_TASK_LIMIT_MS || 50);

const results = [];
let failures = 0;
function check(cond, what) {
  results.push(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
  if (!cond) failures++;
}

// Records what the canvas showed, from inside the page: every slot's states by position,
// committed chunks, and main-thread long tasks.
const INIT = () => {
  const e2e = (window.__e2e = { longTasks: [], slotHistory: {}, committed: 0 });
  try {
    new PerformanceObserver((list) => {
      for (const t of list.getEntries()) e2e.longTasks.push({ start: t.startTime, duration: t.duration });
    }).observe({ type: 'longtask', buffered: true });
  } catch (_) { /* no long-task API: the check below reports it */ }
  const seen = (el) => {
    if (!el.closest || !el.closest('#canvas')) return;
    if (el.classList.contains('slot')) {
      const pos = el.dataset.position;
      const state = el.classList.contains('masked') ? 'masked' : 'revealed';
      const h = (e2e.slotHistory[pos] ||= []);
      if (h[h.length - 1] !== state) h.push(state);
    }
    if (el.classList.contains('committed')) e2e.committed++;
  };
  const observer = new MutationObserver((muts) => {
    for (const m of muts) for (const n of m.addedNodes) {
      if (n.nodeType !== 1) continue;
      seen(n);
      n.querySelectorAll('.slot, .chunk').forEach(seen);
    }
  });
  document.addEventListener('DOMContentLoaded', () => observer.observe(document.body, { childList: true, subtree: true }));
};

const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'bd3lm-e2e-'));
const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: DESKTOP,
  args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // An http:// host that is not this computer, for the non-secure-context check.
    '--host-resolver-rules=MAP insecure.test 127.0.0.1'],
});
await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(pageUrl).origin });
await ctx.addInitScript(INIT);
const page = ctx.pages()[0] || (await ctx.newPage());
page.setDefaultTimeout(180_000);

const consoleErrors = [];
const consoleLog = [];
const requests = [];
page.on('console', (m) => {
  consoleLog.push(m.text());
  if (m.type() === 'error') consoleErrors.push(m.text());
  if (process.env.E2E_VERBOSE) console.log(`  [console] ${m.text()}`);
});
page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
page.on('request', (r) => requests.push(r.url()));

// textContent: some of these sit in the closed "Technical notes" disclosure.
const text = async (sel) => (await page.locator(sel).textContent()).trim();
const stateIs = (s) => page.waitForFunction((s) => document.querySelector('#model-state')?.textContent === s, s);
const modelFiles = () => requests.filter((u) => /\.safetensors$|tokenizer\.json$/.test(u));
const canvasText = () => page.evaluate(() => {
  const c = document.querySelector('#canvas');
  return [...c.querySelectorAll('.chunk, .slot.revealed')].map((e) => e.textContent).join('');
});
async function settings({ tokens, pace, seed, sampler = 'first-hitting', steps = '8', threshold, gamma }) {
  await page.fill('#tokens', String(tokens));
  await page.fill('#pace', String(pace));
  await page.selectOption('#sampler', sampler);
  if (sampler === 'posterior') await page.fill('#steps', steps);
  if (threshold !== undefined) await page.fill('#threshold', String(threshold));
  if (gamma !== undefined) await page.fill('#gamma', String(gamma));
  await page.setChecked('#random-seed', false);
  await page.fill('#seed', String(seed));
}
// Starts a run (Start or Continue) and waits for that run to end.
async function run(button = '#start', timeout = 600_000) {
  const ended = Number(await page.getAttribute('#canvas', 'data-runs-ended'));
  await page.click(button);
  await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, ended, { timeout });
}
const settled = () => page.waitForFunction(() => ['Model ready.', 'No model loaded.'].includes(document.querySelector('#model-state')?.textContent)
  && !document.querySelector('#load').disabled);
async function load() {
  await page.waitForFunction(() => !document.querySelector('#load')?.disabled);
  await page.click('#load');
  await settled();
}
// The demo package (and any cached one) loads by itself when the page opens.
const autoLoaded = settled;
async function axeClean(what) {
  const v = await axeSerious(page);
  check(v.length === 0, `axe-core: no serious or critical violation ${what}${v.length ? ': ' + v.join(' | ') : ''}`);
}

// 1. First visit: the page states what the package costs and, the demo being small, loads it
//    by itself (a Hub model asks first: tests/e2e/hub.test.mjs).
let t0 = Date.now();
await page.goto(pageUrl);
await page.waitForFunction(() => document.querySelector('#package-costs')?.textContent.includes('Download:'));
const costs = await text('#package-costs');
check(/Download: [\d.]+ MB in \d+ files\. GPU memory: [\d.]+ MB/.test(costs), `sizes shown: "${costs}"`);
check(!(await page.locator('#package-url').isVisible()), 'the demo shows no package URL field (no `model/`)');
console.log(`  webgpu: ${await text('#webgpu')}`);

// 2. The demo loads over the network without a click, with the one progress bar.
await autoLoaded();
const loadMs = Date.now() - t0;
check((await text('#model-state')) === 'Model ready.', `the demo model loads by itself from the network (${loadMs} ms from navigation)`);
const firstReport = await text('#load-report');
check(/0 file\(s\) from the browser cache, \d+ from the network/.test(firstReport), `first load uses the network: "${firstReport}"`);
check(/of [\d.]+ MB/.test(await text('#progress-text')), `progress text: "${await text('#progress-text')}"`);
// SwiftShader is a software fallback adapter: for this small model "automatic" picks the CPU engine.
check((await text('#engine')).includes('Engine: CPU') && (await text('#engine')).includes('software fallback'),
  `engine named with its reason: "${await text('#engine')}"`);
check(consoleLog.some((l) => /loaded into the CPU worker/.test(l)),
  'the CPU engine runs in its Web Worker (shards posted to it, parsed there)');
const shardCount = new Set(modelFiles()).size;
check(shardCount >= 2, `model files fetched: ${shardCount}`);

// 2b. Idle: accessible, keyboard-reachable in a sensible order with visible focus.
await axeClean('at 1280 px, idle');
const tabs = await tabOrder(page);
check(inOrder(tabs.order, ['prompt', 'start', 'canvas', 'model-menu', 'load', 'engine-pref', 'tokens', 'sampler', 'top-p', 'seed', 'random-seed', 'pace', 'summary']),
  `keyboard order: prompt, Start, canvas, then the settings and the notes (${tabs.order.join(' > ')})`);
check(tabs.invisible.length === 0, `every focused control shows a focus outline${tabs.invisible.length ? ' (not: ' + tabs.invisible.join(', ') + ')' : ''}`);
await page.focus('#notes summary');
await page.keyboard.press('Enter');
check(await page.evaluate(() => document.querySelector('#notes').open) && await page.locator('#engine').isVisible(),
  'the technical notes open from the keyboard');
await page.keyboard.press('Enter');

// 3. A slow-paced run: masked slots appear, are revealed in place, then settle into text;
//    screenshot mid-generation, then Stop must end the run within one step. At 1280 x 800
//    the prompt, Start/Stop and the block being denoised are in view together.
await settings({ tokens: 96, pace: 250, seed: 1234 });
await page.click('#start');
await page.waitForFunction(() => document.querySelectorAll('#canvas .chunk.committed').length >= 10
  && document.querySelector('#canvas .slot.masked') && document.querySelector('#canvas .slot.revealed.fresh'));
await page.evaluate(() => window.scrollTo(0, 0));
const desktopView = await outOfView(page, ['#prompt', '#start', '#stop', '#canvas']);
check(desktopView.length === 0, `1280 x 800 while generating: prompt, Start/Stop and the denoised block in view${desktopView.length ? ': ' + desktopView.join('; ') : ''}`);
await docsScreenshot('web-mid-generation.png', false);
check(true, 'canvas showed committed text, masked and freshly revealed slots together (tests/e2e/out/web-mid-generation.png)');
await axeClean('at 1280 px, during generation');
const forwardsAtStop = Number(await text('#stat-forwards'));
const stopClicked = Date.now();
await page.click('#stop');
await stateIs('Model ready.');
const stopMs = Date.now() - stopClicked;
const forwardsAfterStop = Number(await text('#stat-forwards'));
check(within(stopMs, 1499), `stop took ${stopMs} ms (one step of 250 ms pause + compute at most)`);
check(forwardsAfterStop - forwardsAtStop <= 1, `at most one model call after Stop (${forwardsAtStop} -> ${forwardsAfterStop})`);
check((await text('#notice')).includes('Stopped'), 'stop notice shown');
check(await page.locator('#canvas .slot.masked').count() === 0, 'no masked slot left after Stop');
const stoppedText = await canvasText();
check(stoppedText.startsWith('My fellow citizens,') && stoppedText.length > 30, `text kept after Stop (${stoppedText.length} chars)`);
await page.waitForTimeout(600);
check(Number(await text('#stat-forwards')) === forwardsAfterStop, 'no more model calls once stopped');

// 4. Copy puts the canvas text on the clipboard.
await page.click('#copy');
await page.waitForFunction(() => document.querySelector('#notice')?.textContent.startsWith('Copied'));
const clip = await page.evaluate(() => navigator.clipboard.readText());
check(clip === stoppedText, 'Copy text copies exactly the canvas text');

// 5. A full-speed run beyond the model's 256-token context (sliding window), measuring
//    main-thread long tasks; the finished text is the second screenshot.
await page.evaluate(() => { window.__e2e.slotHistory = {}; window.__e2e.committed = 0; window.__e2e.runStart = performance.now(); });
await settings({ tokens: 300, pace: 0, seed: 7 });
t0 = Date.now();
await run();
const runMs = Date.now() - t0;
check((await text('#notice')).startsWith('Finished'), 'the long run finished');
const e2e = await page.evaluate(() => ({ ...window.__e2e, runEnd: performance.now() }));
const positions = Object.values(e2e.slotHistory);
const revealedAfterMask = positions.filter((h) => h[0] === 'masked' && h.includes('revealed')).length;
check(positions.length >= 300 && revealedAfterMask === positions.length,
  `every generated position was shown masked, then revealed (${revealedAfterMask}/${positions.length})`);
check(e2e.committed >= 60, `committed blocks settled into text: ${e2e.committed}`);
check(await page.locator('#canvas .slot').count() === 0, 'no slot left when finished');
const finishedText = await canvasText();
check(finishedText.length > stoppedText.length, `finished text: ${finishedText.length} chars`);
const stats = Object.fromEntries(await Promise.all(['forwards-per-s', 'tokens-per-s', 'forwards-per-token', 'first-block', 'tokens', 'forwards', 'longest-step']
  .map(async (k) => [k, await text(`#stat-${k}`)])));
// The generator rounds the length up to whole blocks (block size 4).
check(Number(stats.tokens) >= 300 && Number(stats.tokens) < 304, `300 tokens (rounded up to whole blocks) generated: ${JSON.stringify(stats)}`);
// Responsiveness. The page yields after every step, so a main-thread task is one step. The
// step times the page logs measure its own work; long tasks also catch anything else (layout,
// GC). On a shared machine the OS can stall a step now and then, so by default a few rare
// stalls are tolerated (p99 of the steps must be under the limit and at most 1 % of the steps
// over it); E2E_STRICT_LONG_TASKS=1 demands that no task at all exceeds the limit.
const stepLine = consoleLog.filter((l) => /^bd3lm: \d+ steps: median/.test(l)).pop() || '';
const stepNumbers = stepLine.match(/^bd3lm: (\d+) steps: median ([\d.]+) (ms|s), p99 ([\d.]+) (ms|s), max ([\d.]+) (ms|s), (\d+) over/);
const toMs = (v, unit) => Number(v) * (unit === 's' ? 1000 : 1);
const [steps, median, p99, over] = stepNumbers
  ? [Number(stepNumbers[1]), toMs(stepNumbers[2], stepNumbers[3]), toMs(stepNumbers[4], stepNumbers[5]), Number(stepNumbers[8])]
  : [0, NaN, NaN, NaN];
const runTasks = e2e.longTasks.filter((t) => t.start >= e2e.runStart);
const longest = runTasks.reduce((m, t) => Math.max(m, t.duration), 0);
const tasksOver = runTasks.filter((t) => t.duration > LONG_TASK_LIMIT_MS).length;
console.log(`  steps: ${stepLine.replace('bd3lm: ', '')}; long tasks: ${runTasks.length} over 50 ms, longest ${longest.toFixed(0)} ms`);
check(steps >= 300 && within(p99, LONG_TASK_LIMIT_MS), `a step blocks the page for at most ${LONG_TASK_LIMIT_MS} ms (median ${median} ms, p99 ${p99} ms of ${steps})`);
if (process.env.E2E_STRICT_LONG_TASKS === '1') {
  check(within(longest, LONG_TASK_LIMIT_MS), `no main-thread task over ${LONG_TASK_LIMIT_MS} ms (longest ${longest.toFixed(0)} ms)`);
} else {
  check(within(tasksOver, Math.ceil(steps / 100)) && within(over, Math.ceil(steps / 100)),
    `main-thread tasks over ${LONG_TASK_LIMIT_MS} ms are rare stalls: ${tasksOver} tasks, ${over} steps of ${steps} (longest ${longest.toFixed(0)} ms, run ${runMs} ms)`);
}
await page.evaluate(() => window.scrollTo(0, 0));
await page.screenshot({ path: path.join(outDir, 'beyond-context.png'), fullPage: true });

// 5b. A finished text within the demo model's 256-token context (beyond it, this small model,
//     trained only on 256-token windows that start with BOS, drifts into <|endoftext|>).
await settings({ tokens: 200, pace: 0, seed: 11 });
await run();
check((await text('#notice')).startsWith('Finished') && await page.locator('#canvas .slot').count() === 0 && (await canvasText()).length > 400, 'a 200-token text finished');
await page.evaluate(() => window.scrollTo(0, 0));
await docsScreenshot('web-finished.png');

// 5b'. A parallel sampler: with a low confidence threshold (the demo model is rarely sure of
//      a token), some steps reveal several tokens, and a block costs fewer model calls.
await settings({ tokens: 64, pace: 0, seed: 5, sampler: 'confidence', threshold: '0.001' });
await run();
const maxReveal = Number(await text('#stat-max-reveal'));
const callsPerToken = Number(await text('#stat-forwards-per-token'));
check((await text('#notice')).startsWith('Finished') && maxReveal > 1 && callsPerToken < 1.2,
  `confidence sampler: up to ${maxReveal} tokens revealed in one step, ${callsPerToken} model calls per token`);
const confidenceText = await canvasText();

// 5b-url. Shareable state: the URL now names the prompt, seed, sampler and its settings; opened
//         again (same engine), it shows them, Enter in the prompt starts, the text is the same.
//         The finished text is announced once through the polite live region, not every step.
const sharedUrl = page.url();
const shared = new URL(sharedUrl).searchParams;
check(shared.get('seed') === '5' && shared.get('sampler') === 'confidence' && shared.get('threshold') === '0.001'
  && shared.get('tokens') === '64' && shared.get('prompt') === 'My fellow citizens,', `the URL holds the run: ${new URL(sharedUrl).search}`);
await page.goto(sharedUrl);
await autoLoaded();
check(await page.inputValue('#seed') === '5' && await page.inputValue('#sampler') === 'confidence'
  && await page.inputValue('#threshold') === '0.001' && !(await page.isChecked('#random-seed')), 'the settings come back from the URL');
await recordLiveRegions(page);
const runsBefore = Number(await page.getAttribute('#canvas', 'data-runs-ended'));
await page.focus('#prompt');
await page.keyboard.press('Enter');
await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, runsBefore);
check(await canvasText() === confidenceText, `the same URL gives the same text (${confidenceText.length} chars)`);
const live = await liveChanges(page);
const announced = live.filter((c) => c.id === 'announce');
check(announced.length === 1 && announced[0].text.includes(confidenceText.slice(-40)) && live.length <= 3,
  `finished text announced once, politely (${live.length} live-region changes in a run of ${await text('#stat-forwards')} model calls: ${live.map((c) => c.id).join(', ')})`);
check(await page.evaluate(() => !document.querySelector('#canvas').closest('[aria-live]') && document.querySelector('#announce').getAttribute('aria-live') === 'polite'),
  'the canvas is not a live region; the announcement is aria-live="polite"');

// 5b-compare. Block sizes side by side: the same prompt, seed and sampler on the demo (block
//             size 4) and a second small package (block size 8), one after another, each
//             with its canvas, model calls per token and tokens/s; the demo's column shows
//             exactly the text of the single run above.
await page.fill('#compare-models', 'model/, /pkgs/bs8-q8/');
const comparedBefore = Number(await page.getAttribute('#comparison', 'data-done'));
t0 = Date.now();
await page.click('#compare');
await page.waitForFunction((n) => Number(document.querySelector('#comparison').dataset.done) > n, comparedBefore, { timeout: 300_000 });
const columns = await page.evaluate(() => [...document.querySelectorAll('#comparison .column')].map((c) => ({
  block: c.dataset.blockSize,
  title: c.querySelector('.column-title').textContent,
  status: c.querySelector('.column-status').textContent,
  text: [...c.querySelectorAll('.canvas .chunk, .canvas .slot.revealed')].map((e) => e.textContent).join(''),
  callsPerToken: Number(c.querySelector('.calls-per-token').textContent),
  tokensPerS: Number(c.querySelector('.tokens-per-s').textContent),
  tokens: Number(c.querySelector('.tokens').textContent),
})));
console.log(`  comparison (${Date.now() - t0} ms): ${JSON.stringify(columns.map(({ text, ...rest }) => rest))}`);
check(columns.length === 2 && columns[0].block === '4' && columns[1].block === '8'
  && columns.every((c) => c.status.startsWith('Finished') && c.tokens >= 64 && c.callsPerToken > 0 && c.tokensPerS > 0),
  `two models compared side by side with block sizes 4 and 8, calls/token ${columns.map((c) => c.callsPerToken).join(' vs ')}`);
check(columns[0].text === confidenceText && columns[1].text.startsWith('My fellow citizens,') && columns[1].text.length > 'My fellow citizens,'.length,
  'each column shows its own text; the demo column equals the single run with the same settings');
await axeClean('at 1280 px, with a comparison shown');
// Back to the demo model for the rest.
await page.goto(pageUrl);
await autoLoaded();
await settings({ tokens: 64, pace: 0, seed: 5, sampler: 'first-hitting' });

// 5b-phone. A phone (390 x 844): Ctrl+Enter starts, the prompt, Start/Stop and the denoised
//           block are in view together, Tab from the prompt reaches Stop, Space stops; no
//           sideways scrolling down to 360 px; accessible idle and while generating.
await page.setViewportSize(PHONE);
await settings({ tokens: 96, pace: 150, seed: 8 });
await page.focus('#prompt');
await page.keyboard.press('Control+Enter');
await page.waitForFunction(() => document.querySelector('#canvas .slot.masked') && document.querySelectorAll('#canvas .chunk.committed').length >= 4);
await page.evaluate(() => window.scrollTo(0, 0));
const phoneView = await outOfView(page, ['#prompt', '#start', '#stop', '#canvas']);
check(phoneView.length === 0, `390 x 844 while generating: prompt, Start/Stop and the denoised block in view${phoneView.length ? ': ' + phoneView.join('; ') : ''}`);
await docsScreenshot('web-phone.png', false);
await axeClean('at 390 px, during generation');
await page.focus('#prompt');
await page.keyboard.press('Tab');
check(await page.evaluate(() => document.activeElement.id) === 'stop', 'Tab from the prompt reaches Stop while generating');
await page.keyboard.press('Space');
await stateIs('Model ready.');
check((await text('#notice')).includes('Stopped'), 'Stop works from the keyboard');
await axeClean('at 390 px, idle');
const sideways = await sidewaysAt(page, [360, 390, 600, 820, 1024, 1280]);
check(sideways.length === 0, `no sideways scrolling at 360 to 1280 px${sideways.length ? ': ' + sideways.join('; ') : ''}`);
await page.setViewportSize(DESKTOP);

// 5c. A prompt longer than the model's context is refused in words; the model stays loaded.
await page.fill('#prompt', 'We the people '.repeat(120));
await page.click('#start');
await page.waitForFunction(() => document.querySelector('#error-text')?.textContent.startsWith('Cannot start'));
check((await text('#error-text')).includes('prompt') && (await text('#model-state')) === 'Model ready.',
  `too-long prompt explained: "${(await text('#error-text')).slice(0, 110)}…"`);
await axeClean('at 1280 px, with an error shown');
await page.setViewportSize(PHONE);
await axeClean('at 390 px, with an error shown');
check((await sidewaysAt(page, [360])).length === 0, 'no sideways scrolling at 360 px with the error shown');
await page.setViewportSize(DESKTOP);
await page.fill('#prompt', 'My fellow citizens,');
// A refused run leaves the URL of the last run that ran (the page writes it when a run ends).
check(!(new URL(page.url()).searchParams.get('prompt') ?? '').includes('We the people'),
  `the refused prompt is not written into the URL (${new URL(page.url()).search.slice(0, 80)})`);
// The reloads below must start from the demo's defaults.
await page.evaluate(() => history.replaceState(null, '', location.pathname));

// 6. Reload: every file comes from the Cache API, no network request for model files.
requests.length = 0;
await page.reload();
await page.waitForFunction(() => document.querySelector('#package-costs')?.textContent.includes('All files are in the browser cache'));
t0 = Date.now();
await autoLoaded();
check((await text('#model-state')) === 'Model ready.', `reload loads from the cache in ${Date.now() - t0} ms`);
check(modelFiles().length === 0, `no network request for model files on reload (${modelFiles().length})`);
check(/\d+ file\(s\) from the browser cache, 0 from the network/.test(await text('#load-report')), `report: "${await text('#load-report')}"`);

// 7. A corrupted cached shard is detected, evicted and downloaded again.
// The shard names come from the cache itself, so the checks hold for packages of any shard count.
const weightShards = await page.evaluate(async () => {
  const cache = await caches.open('bd3lm-packages-v1');
  // The demo's shards (the comparison also cached another package's).
  return (await cache.keys()).map((r) => r.url).filter((u) => /\/model\/weights-\d+\.safetensors$/.test(u)).sort();
});
check(weightShards.length >= 1, `the cache holds the package's weight shards (${weightShards.length})`);
const victimName = weightShards[0].split('/').pop();
const serverBadName = weightShards[weightShards.length - 1].split('/').pop();
const victim = await page.evaluate(async (key) => {
  const cache = await caches.open('bd3lm-packages-v1');
  const bytes = new Uint8Array(await (await cache.match(key)).arrayBuffer());
  bytes[bytes.length - 5] ^= 0xff;
  await cache.put(key, new Response(bytes));
  return key;
}, weightShards[0]);
requests.length = 0;
await page.reload();
await autoLoaded();
check((await text('#load-report')).includes(`The cached copy of ${victimName} failed verification`),
  `tampered cache entry detected: "${await text('#load-report')}"`);
check(modelFiles().length === 1 && modelFiles()[0] === victim, `only the bad shard was downloaded again (${modelFiles().join(', ')})`);

// 8. A file that is corrupt on the server is fetched twice, then named.
await page.evaluate(async (name) => {
  const cache = await caches.open('bd3lm-packages-v1');
  for (const r of await cache.keys()) if (r.url.endsWith(`/${name}`)) await cache.delete(r);
}, serverBadName);
let served = 0;
await page.route(`**/${serverBadName}`, async (route) => {
  served++;
  const response = await route.fetch();
  const body = Buffer.from(await response.body());
  body[100] ^= 0xff;
  await route.fulfill({ response, body });
});
await page.reload();
await autoLoaded();
const badFile = await text('#error-text');
check(badFile.startsWith(`${serverBadName} is corrupt`) && served === 2,
  `server-side corruption: fetched ${served} times, then "${badFile.slice(0, 90)}…"`);
check((await text('#model-state')) === 'No model loaded.', 'no model is built from a bad file');
await page.unroute(`**/${serverBadName}`);

// 8b. The WGSL engine on WebGPU (SwiftShader here: correct but slow, so only two blocks).
await page.selectOption('#engine-pref', 'webgpu');
t0 = Date.now();
await load();
const gpuLoadMs = Date.now() - t0;
check((await text('#model-state')) === 'Model ready.' && (await text('#engine')).startsWith('Engine: WebGPU'),
  `loads on WebGPU in ${gpuLoadMs} ms: "${(await text('#engine')).slice(0, 60)}"`);
await page.evaluate(() => { window.__e2e.slotHistory = {}; window.__e2e.runStart = performance.now(); });
await settings({ tokens: 8, pace: 0, seed: 21 });
t0 = Date.now();
await run();
const gpuRunMs = Date.now() - t0;
const gpu = await page.evaluate(() => window.__e2e);
const gpuPositions = Object.values(gpu.slotHistory);
const gpuStats = Object.fromEntries(await Promise.all(['forwards-per-s', 'tokens-per-s', 'forwards', 'tokens', 'longest-step']
  .map(async (k) => [k, await text(`#stat-${k}`)])));
const gpuTasks = gpu.longTasks.filter((t) => t.start >= gpu.runStart);
check((await text('#notice')).startsWith('Finished') && gpuPositions.length >= 8 && gpuPositions.every((h) => h[0] === 'masked' && h.includes('revealed')),
  `WebGPU engine generated ${gpuStats.tokens} tokens, each shown masked then revealed, in ${gpuRunMs} ms: ${JSON.stringify(gpuStats)}`);
check(gpuTasks.every((t) => t.duration <= LONG_TASK_LIMIT_MS),
  `the page stays responsive while the GPU works (${gpuTasks.length} long tasks, longest ${gpuTasks.reduce((m, t) => Math.max(m, t.duration), 0).toFixed(0)} ms)`);
await page.evaluate(() => window.scrollTo(0, 0));
await page.screenshot({ path: path.join(outDir, 'webgpu-run.png'), fullPage: true });

// 9. Lost device mid-run (simulated): reported, text kept, restart and continue.
await page.goto(`${pageUrl}?fault=device-lost-after-20`);
await autoLoaded();
await settings({ tokens: 64, pace: 0, seed: 3 });
await page.click('#start');
await page.waitForFunction(() => document.querySelector('#error-text')?.textContent.includes('GPU device was lost'));
check(await page.locator('#restart').isVisible(), `device loss reported with a restart button: "${(await text('#error-text')).slice(0, 80)}…"`);
const keptText = await canvasText();
check(keptText.length > 'My fellow citizens,'.length, `text kept after the device loss (${keptText.length} chars)`);
await page.click('#restart');
await stateIs('Model ready.');
await page.fill('#tokens', '16');
await run('#continue');
check((await text('#notice')).startsWith('Finished'), 'the continued run finished');
const continued = await canvasText();
check(continued.startsWith(keptText.slice(0, keptText.length - 20)) && continued.length > keptText.length,
  `continue after restart appends to the kept text (${keptText.length} -> ${continued.length} chars)`);

// 10. A package on another site without CORS: explained in plain words.
const errorsBeforeCors = consoleErrors.length;
await page.selectOption('#model-menu', 'custom');
check(await page.inputValue('#package-url') === '', 'Other: an empty field for a URL or id');
await page.fill('#package-url', `http://localhost:${port}/deploy/under/bd3lm/model/`);
await page.click('#check');
await page.waitForFunction(() => document.querySelector('#error-text')?.textContent.length > 0);
check((await text('#error-text')).includes('Access-Control-Allow-Origin'), `CORS explained: "${(await text('#error-text')).slice(0, 100)}…"`);
consoleErrors.splice(errorsBeforeCors); // the blocked request itself logs console errors, as it should

// 11. Plain http from another host: no secure context, no WebGPU, no cache; still works on the CPU.
const insecureUrl = pageUrl.replace('127.0.0.1', 'insecure.test');
await page.goto(insecureUrl);
await page.waitForFunction(() => document.querySelector('#package-costs')?.textContent.includes('Download:'));
check(await page.locator('#insecure').isVisible(), 'non-secure context explained');
check((await text('#webgpu')).includes('No WebGPU'), `no WebGPU said plainly: "${await text('#webgpu')}" ${await text('#engine')}`);
await autoLoaded();
await settings({ tokens: 8, pace: 0, seed: 5 });
await run();
check((await text('#notice')).startsWith('Finished'), 'generation works there too');
check((await text('#load-report')).includes('0 file(s) from the browser cache'), 'works without the Cache API (verified in wasm)');
check((await text('#engine')).includes('Engine: CPU') && (await text('#engine')).includes('does not offer WebGPU'), 'falls back to the CPU engine, saying why');
await page.screenshot({ path: path.join(outDir, 'insecure-context.png') });

check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? ': ' + consoleErrors.join(' | ') : ''}`);
await ctx.close();
fs.rmSync(userData, { recursive: true, force: true });
fs.writeFileSync(path.join(outDir, 'results.txt'), results.join('\n') + '\n');
console.log(failures ? `\n${failures} check(s) FAILED` : `\nall ${results.length} checks passed`);
process.exit(failures ? 1 : 0);
