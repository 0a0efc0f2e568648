// Peak JS + wasm memory of a page, sampled through the Chrome DevTools Protocol while
// something runs (docs/models.md): every `everyMs`, `Runtime.getHeapUsage` gives the JS heap
// in use and the bytes of ArrayBuffer backing stores (fetched chunks, Uint8Arrays handed to
// the Cache API and to WebGPU), and the page reports its wasm memory (window.__wasmMemory,
// set on TrunkApplicationStarted by WASM_MEMORY_INIT). A sample's total is JS heap + backing
// stores, plus the wasm memory when the backing stores do not already include it.

// Init script: remembers the wasm memory of the page.
export const WASM_MEMORY_INIT = () => {
  addEventListener('TrunkApplicationStarted', (e) => { window.__wasmMemory = e.detail.wasm.memory; });
};

export async function startMemorySampler(page, everyMs = 100) {
  const cdp = await page.context().newCDPSession(page);
  const peak = { total: 0, jsHeap: 0, backing: 0, wasm: 0, samples: 0 };
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const heap = await cdp.send('Runtime.getHeapUsage');
        const wasm = await page.evaluate(() => window.__wasmMemory?.buffer.byteLength || 0);
        const backing = heap.backingStorageSize || 0;
        // When the wasm memory is counted among the backing stores, do not count it twice.
        const total = heap.usedSize + (backing >= wasm ? backing : backing + wasm);
        peak.samples++;
        if (total > peak.total) Object.assign(peak, { total, jsHeap: heap.usedSize, backing, wasm });
      } catch (_) { /* navigation in progress */ }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await cdp.detach().catch(() => {});
      return peak;
    },
  };
}

export const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
