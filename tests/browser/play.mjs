// Plays an HLS URL with hls.js in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) and prints one JSON line: what the player did. Exit code 0 when playback
// reached the asked time with frames decoded and no fatal error.
//
//   node play.mjs URL [--seconds N] [--switch-levels] [--timeout S] [--ll] [--insecure]
//
// --ll: Low-Latency HLS (hls.js lowLatencyMode, its own live sync point from PART-HOLD-BACK);
// the output then has `latency`: wall clock minus the playing frame's EXT-X-PROGRAM-DATE-TIME,
// sampled every 250 ms once a second of media played (ms: p50, p95, max, samples).
// --insecure: accept the server's certificate (a test's self-signed one).
//
// The page and hls.js are served from a local HTTP server on port 0 (a real http origin, so
// the cross-origin requests to streamfleet exercise its CORS headers).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const url = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const seconds = Number(opt('--seconds', '4'));
const timeoutS = Number(opt('--timeout', '60'));
const switchLevels = args.includes('--switch-levels');
const lowLatency = args.includes('--ll');
const insecure = args.includes('--insecure');
const hlsConfig = lowLatency
  ? { lowLatencyMode: true, manifestLoadingMaxRetry: 6 }
  : { liveSyncDurationCount: 3, manifestLoadingMaxRetry: 6 };

const page = `<!doctype html><meta charset=utf-8><title>hls</title>
<video id=v muted autoplay playsinline></video>
<script src="/hls.js"></script>
<script>
window.result = { fatal: null, errors: [], levels: [], switched: [], supported: Hls.isSupported() };
const v = document.getElementById('v');
const hls = new Hls(${JSON.stringify(hlsConfig)});
window.hls = hls;
hls.on(Hls.Events.ERROR, (_, d) => {
  result.errors.push(d.details);
  if (d.fatal) result.fatal = d.type + ': ' + d.details;
});
hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
  result.levels = d.levels.map((l) => ({ height: l.height, bitrate: l.bitrate }));
});
hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => result.switched.push(d.level));
hls.loadSource(${JSON.stringify(url)});
hls.attachMedia(v);
v.play().catch((e) => result.errors.push('play: ' + e));
</script>`;

const server = http.createServer((req, res) => {
  if (req.url === '/hls.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    fs.createReadStream(path.join(here, 'node_modules/hls.js/dist/hls.min.js')).pipe(res);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic',
    '--autoplay-policy=no-user-gesture-required'],
});
const out = { ok: false, currentTime: 0, frames: 0, dropped: 0 };
const latencies = [];
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: insecure });
  const tab = await context.newPage();
  tab.on('console', (m) => { if (m.type() === 'error') (out.console ||= []).push(m.text()); });
  await tab.goto(origin);
  const state = () => tab.evaluate(() => {
    const v = document.getElementById('v');
    const q = v.getVideoPlaybackQuality();
    const date = window.hls.playingDate;
    return { ...window.result, currentTime: v.currentTime, frames: q.totalVideoFrames,
      latencyNow: date ? Date.now() - date.getTime() : null,
      dropped: q.droppedVideoFrames, level: window.hls.currentLevel };
  });
  const deadline = Date.now() + timeoutS * 1000;
  const waitUntil = async (cond) => {
    for (;;) {
      const s = await state();
      Object.assign(out, s);
      if (lowLatency && s.currentTime >= 1 && s.latencyNow !== null) latencies.push(s.latencyNow);
      if (s.fatal || cond(s)) return s;
      if (Date.now() > deadline) throw new Error('timed out: ' + JSON.stringify(s));
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const start = await waitUntil((s) => s.currentTime >= seconds && s.frames > 0);
  if (!start.fatal && switchLevels) {
    // Force every level in turn; each must play on (currentTime advances) without a fatal error.
    out.forced = [];
    for (let level = 0; level < start.levels.length; level++) {
      await tab.evaluate((l) => { window.hls.currentLevel = l; }, level);
      const from = (await state()).currentTime;
      const s = await waitUntil((s) => s.switched.includes(level) && s.currentTime > from + 2);
      out.forced.push({ level, height: start.levels[level].height, currentTime: s.currentTime });
      if (s.fatal) break;
    }
  }
  out.ok = !out.fatal && out.currentTime >= seconds && out.frames > 0;
  if (lowLatency) {
    const sorted = [...latencies].sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    out.latency = sorted.length
      ? { p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1], samples: sorted.length }
      : null;
  }
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
