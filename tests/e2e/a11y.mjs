// Accessibility and layout checks shared by the e2e tests (issue 20): axe-core in the real
// page, what is in view, sideways scrolling, keyboard order with visible focus, and which
// live regions speak during a run.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const AXE = path.join(root, 'tools/npm/node_modules/axe-core/axe.min.js');

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/// axe-core's violations of impact serious or critical on the page as it is now, as lines
/// "rule (impact): n nodes: selector, ..." (empty: none).
export async function axeSerious(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.addScriptTag({ path: AXE });
  }
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')),
    }));
  });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.length} nodes: ${v.nodes.slice(0, 4).join(', ')}`);
}

/// Whether the elements (selectors) are wholly inside the viewport without scrolling the
/// page, and the block being denoised (`#block`, when it has slots) is inside the canvas's
/// visible area; returns the elements that are not, with their boxes.
export async function outOfView(page, selectors) {
  return page.evaluate((selectors) => {
    const bad = [];
    const vh = window.innerHeight, vw = window.innerWidth;
    const inside = (r, top, bottom, left, right) => r.top >= top - 1 && r.bottom <= bottom + 1 && r.left >= left - 1 && r.right <= right + 1;
    for (const sel of selectors) {
      const el = document.querySelector(sel);
      const r = el?.getBoundingClientRect();
      if (!r || r.height === 0 || !inside(r, 0, vh, 0, vw)) bad.push(`${sel} ${r ? `${r.top.toFixed(0)}..${r.bottom.toFixed(0)} of ${vh}` : 'missing'}`);
    }
    const slots = [...document.querySelectorAll('#block .slot')];
    const canvas = document.querySelector('#canvas').getBoundingClientRect();
    if (slots.length) {
      const last = slots[slots.length - 1].getBoundingClientRect();
      if (!inside(last, Math.max(canvas.top, 0), Math.min(canvas.bottom, vh), 0, vw)) {
        bad.push(`#block's last slot ${last.top.toFixed(0)}..${last.bottom.toFixed(0)}, canvas ${canvas.top.toFixed(0)}..${canvas.bottom.toFixed(0)}`);
      }
    } else bad.push('#block has no slot');
    if (window.scrollY !== 0) bad.push(`page scrolled by ${window.scrollY}`);
    return bad;
  }, selectors);
}

/// Widths at which the page is wider than the screen (sideways scrolling).
export async function sidewaysAt(page, widths, height = 844) {
  const bad = [];
  for (const width of widths) {
    await page.setViewportSize({ width, height });
    const w = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
    if (w.scroll > w.client) bad.push(`${width} px: page ${w.scroll} px wide`);
  }
  return bad;
}

/// Tabs through the page from the top: the focused elements (id, or tag) in order, and
/// those without a visible focus indicator (an outline of at least 2 px).
export async function tabOrder(page, presses = 30) {
  // A click on the heading (not focusable) puts the keyboard's starting point at the top.
  await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await page.click('h1');
  const order = [];
  const invisible = [];
  for (let i = 0; i < presses; i++) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const s = getComputedStyle(el);
      return {
        name: el.id || el.tagName.toLowerCase(),
        visible: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2,
      };
    });
    if (!f) break;
    if (order.includes(f.name)) break; // wrapped around
    order.push(f.name);
    if (!f.visible) invisible.push(f.name);
  }
  return { order, invisible };
}

/// Whether `expected` appears in `order` in the same relative order (other stops between).
export function inOrder(order, expected) {
  let at = -1;
  for (const name of expected) {
    const i = order.indexOf(name);
    if (i <= at) return false;
    at = i;
  }
  return true;
}

/// Starts recording the text of every live region (aria-live, role=status/alert) each time
/// it changes; `liveChanges(page)` returns them.
export async function recordLiveRegions(page) {
  await page.evaluate(() => {
    const log = (window.__live = []);
    const regions = [...document.querySelectorAll('[aria-live], [role="status"], [role="alert"]')];
    for (const r of regions) {
      let last = r.textContent;
      new MutationObserver(() => {
        if (r.textContent !== last) { last = r.textContent; log.push({ id: r.id, text: last }); }
      }).observe(r, { childList: true, subtree: true, characterData: true });
    }
  });
}

export async function liveChanges(page) {
  return page.evaluate(() => window.__live || []);
}
