// Glass-to-glass latency of a live stream in headless Chromium with hls.js (low-latency mode).
//
//   node glass.mjs URL --epoch MS [--seconds N] [--warmup N] [--insecure] [--lowest]
//
// The publisher (bench/llhls/run) paints into every frame, as 40 black/white blocks across the
// top 64 of 360 lines, the wall-clock time it made the frame (ms since --epoch, 32 bits, then 8
// check bits). Here, at every presented frame (requestVideoFrameCallback, sampled every 200 ms),
// the page draws the frame into a canvas, reads the blocks back and takes
//   latency = the frame's expected display time (wall clock) - the time painted into it.
// Both ends read the same system clock. Alongside it, `pdt`: wall clock minus hls.js's
// playingDate (the frame's EXT-X-PROGRAM-DATE-TIME, stamped by the origin at ingest), which
// leaves out the encoder and the publisher's hop. `--lowest` pins hls.js to the lowest level
// (a transcoded rendition, when there is a ladder).
//
// Prints one JSON line; exit code 0 when samples were taken without a fatal player error.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const browserDir = path.join(here, '../../tests/browser');
const { chromium } = createRequire(path.join(browserDir, 'package.json'))('playwright-core');

const args = process.argv.slice(2);
const url = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const epoch = Number(opt('--epoch', 'NaN'));
const seconds = Number(opt('--seconds', '60'));
const warmup = Number(opt('--warmup', '5'));
const insecure = args.includes('--insecure');
const lowest = args.includes('--lowest');
if (!url || !Number.isFinite(epoch)) {
  console.error('usage: node glass.mjs URL --epoch MS [--seconds N] [--warmup N] [--insecure] [--lowest]');
  process.exit(2);
}

const page = `<!doctype html><meta charset=utf-8><title>glass</title>
<video id=v muted autoplay playsinline></video><canvas id=c hidden></canvas>
<script src="/hls.js"></script>
<script>
const EPOCH = ${epoch}, WARMUP = ${warmup};
window.result = { fatal: null, errors: [], glass: [], pdt: [], unreadable: 0, stalls: 0, heights: {} };
const v = document.getElementById('v');
const ctx = document.getElementById('c').getContext('2d', { willReadFrequently: true });
const hls = new Hls({ lowLatencyMode: true, manifestLoadingMaxRetry: 6 });
window.hls = hls;
hls.on(Hls.Events.ERROR, (_, d) => {
  result.errors.push(d.details);
  if (d.fatal) result.fatal = d.type + ': ' + d.details;
});
hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
  if (${lowest}) hls.currentLevel = d.levels.reduce((lo, l, i) => (l.height < d.levels[lo].height ? i : lo), 0);
});
v.addEventListener('waiting', () => { if (v.currentTime > WARMUP) result.stalls++; });
hls.loadSource(${JSON.stringify(url)});
hls.attachMedia(v);
v.play().catch((e) => result.errors.push('play: ' + e));

// The time painted into the presented frame (ms since EPOCH), or null if unreadable.
function painted() {
  const w = v.videoWidth, h = v.videoHeight;
  if (!w || !h) return null;
  const top = Math.ceil((h * 64) / 360);
  ctx.canvas.width = w;
  ctx.canvas.height = top;
  ctx.drawImage(v, 0, 0, w, top, 0, 0, w, top);
  const px = ctx.getImageData(0, 0, w, top).data;
  const bits = [];
  for (let row = 0; row < 2; row++) {
    for (let col = 0; col < 20; col++) {
      const x = Math.floor(((col + 0.5) * w) / 20), y = Math.floor(((row + 0.5) * top) / 2);
      bits.push(px[(y * w + x) * 4] > 128 ? 1 : 0);
    }
  }
  const bytes = [0, 1, 2, 3, 4].map((b) => bits.slice(b * 8, b * 8 + 8).reduce((n, bit) => n * 2 + bit, 0));
  const check = ((bytes[0] + bytes[1] + bytes[2] + bytes[3]) ^ 0xa5) & 0xff;
  if (check !== bytes[4]) return null;
  return ((bytes[0] << 24) >>> 0) + (bytes[1] << 16) + (bytes[2] << 8) + bytes[3];
}

let last = -1e9;
v.requestVideoFrameCallback(function frame(now, meta) {
  if (now - last >= 200 && v.currentTime > WARMUP) {
    last = now;
    const stamp = painted();
    if (stamp === null) result.unreadable++;
    else result.glass.push(performance.timeOrigin + meta.expectedDisplayTime - (EPOCH + stamp));
    if (hls.playingDate) result.pdt.push(Date.now() - hls.playingDate.getTime());
    result.heights[v.videoHeight] = (result.heights[v.videoHeight] || 0) + 1;
  }
  v.requestVideoFrameCallback(frame);
});
</script>`;

const server = http.createServer((req, res) => {
  if (req.url === '/hls.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    fs.createReadStream(path.join(browserDir, 'node_modules/hls.js/dist/hls.min.js')).pipe(res);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic',
    '--autoplay-policy=no-user-gesture-required'],
});
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))]);
  return s.length ? { p50: at(0.5), p95: at(0.95), max: Math.round(s[s.length - 1]), samples: s.length } : null;
};
const out = { ok: false };
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: insecure });
  const tab = await context.newPage();
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  const deadline = Date.now() + (warmup + seconds + 60) * 1000;
  let r;
  for (;;) {
    r = await tab.evaluate(() => ({ ...window.result, currentTime: document.getElementById('v').currentTime }));
    if (r.fatal || r.currentTime >= warmup + seconds) break;
    if (Date.now() > deadline) throw new Error('timed out at currentTime ' + r.currentTime);
    await new Promise((res) => setTimeout(res, 500));
  }
  Object.assign(out, {
    glass: stats(r.glass), pdt: stats(r.pdt), unreadable: r.unreadable, stalls: r.stalls,
    heights: r.heights, fatal: r.fatal, errors: [...new Set(r.errors)],
  });
  out.ok = !r.fatal && r.glass.length > 0;
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
