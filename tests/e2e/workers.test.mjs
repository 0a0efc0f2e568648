// The page's CPU engine on several Web Workers (issue 19; run through tests/e2e/run.sh).
// Usage: node workers.test.mjs <isolated page URL> <plain page URL>
// The isolated URL is served with COOP/COEP (tests/e2e/serve_isolated.py). On it, 2 workers
// must write exactly the text 1 worker writes (same seed), with no main-thread task over
// 50 ms; on the plain URL, ?workers=2 falls back to one worker and the page says why.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { chromium } = require(path.join(here, '../../tools/npm/node_modules/playwright-core'));
const [isolatedUrl, plainUrl] = process.argv.slice(2);
if (!isolatedUrl || !plainUrl) throw new Error('usage: node workers.test.mjs <isolated url> <plain url>');
const LONG_TASK_LIMIT_MS = Number(process.env.E2E_LONG_TASK_LIMIT_MS || 50);

let failures = 0;
function check(cond, what) {
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
  if (!cond) failures++;
}

const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'bd3lm-workers-'));
const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
await ctx.addInitScript(() => {
  window.__workers = { longTasks: [] };
  try {
    new PerformanceObserver((l) => l.getEntries().forEach((t) => window.__workers.longTasks.push(t.duration)))
      .observe({ type: 'longtask', buffered: true });
  } catch (_) { /* reported below */ }
});
const page = ctx.pages()[0] || (await ctx.newPage());
page.setDefaultTimeout(180_000);
const errors = [];
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
// textContent: #engine sits in the closed "Technical notes" disclosure.
const text = async (sel) => (await page.locator(sel).textContent()).trim();

// Loads the demo package on the CPU engine with `workers`, generates with a fixed seed and
// gives the canvas text and the longest main-thread task during generation.
async function generate(url, workers) {
  await page.goto(`${url}?engine=cpu&workers=${workers}`);
  await page.waitForFunction(() => document.querySelector('#package-costs')?.textContent.includes('Download:'));
  await page.waitForFunction(() => !document.querySelector('#load')?.disabled);
  await page.click('#load');
  await page.waitForFunction(() => ['Model ready.', 'No model loaded.'].includes(document.querySelector('#model-state')?.textContent)
    && !document.querySelector('#load').disabled);
  const state = await text('#model-state');
  if (state !== 'Model ready.') return { state, engine: await text('#engine'), text: '', longest: 0 };
  await page.fill('#tokens', '64');
  await page.fill('#pace', '0');
  await page.setChecked('#random-seed', false);
  await page.fill('#seed', '19');
  await page.evaluate(() => { window.__workers.longTasks = []; });
  const ended = Number(await page.getAttribute('#canvas', 'data-runs-ended'));
  await page.click('#start');
  await page.waitForFunction((n) => Number(document.querySelector('#canvas').dataset.runsEnded) > n, ended, { timeout: 600_000 });
  const generated = await page.evaluate(() => [...document.querySelectorAll('#canvas .chunk, #canvas .slot.revealed')]
    .map((e) => e.textContent).join(''));
  const long = (await page.evaluate(() => window.__workers.longTasks)).filter((d) => d > LONG_TASK_LIMIT_MS);
  return { state, engine: await text('#engine'), text: generated, long, notice: await text('#notice') };
}

await page.goto(isolatedUrl);
check(await page.evaluate(() => self.crossOriginIsolated === true), 'the COOP/COEP server makes the page cross-origin isolated');
const one = await generate(isolatedUrl, 1);
check(one.state === 'Model ready.' && one.engine.includes('one Web Worker'), `1 worker: ${one.engine}`);
const two = await generate(isolatedUrl, 2);
check(two.state === 'Model ready.' && two.engine.includes('2 Web Workers'), `2 workers: ${two.engine}`);
check(one.notice.startsWith('Finished') && two.notice.startsWith('Finished'), `both runs finished ("${one.notice}", "${two.notice}")`);
check(one.text.length > 40 && two.text === one.text,
  `2 workers write exactly 1 worker's text (${one.text.length} chars: ${JSON.stringify(one.text.slice(0, 60))}…)`);
// As in web.test.mjs: on a shared machine the OS can stall the page now and then, so one
// stall is allowed unless E2E_STRICT_LONG_TASKS=1.
const allowed = process.env.E2E_STRICT_LONG_TASKS === '1' ? 0 : 1;
check(two.long.length <= allowed, `main-thread tasks over ${LONG_TASK_LIMIT_MS} ms with 2 workers: ${two.long.length} `
  + `(${two.long.map((d) => d.toFixed(0)).join(', ')}; 1 worker: ${one.long.length}; at most ${allowed})`);

const plain = await generate(plainUrl, 2);
check(plain.state === 'Model ready.' && plain.engine.includes('one Web Worker') && plain.engine.includes('cross-origin isolated'),
  `without isolation, one worker and the page says why: "${plain.engine.slice(0, 160)}…"`);
check(plain.text === one.text, 'the fallback writes the same text');
check(errors.length === 0, `no console errors${errors.length ? ': ' + errors.join(' | ') : ''}`);

await ctx.close();
fs.rmSync(userData, { recursive: true, force: true });
console.log(failures ? `\n${failures} worker check(s) FAILED` : '\nall worker checks passed');
process.exit(failures ? 1 : 0);
