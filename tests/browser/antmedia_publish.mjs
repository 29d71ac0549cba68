// Publishes Chromium's fake camera and microphone (--use-fake-device-for-media-stream) with Ant
// Media's own browser client, @antmedia/webrtc_adaptor (its dist bundle, unchanged, after
// @mediapipe/selfie_segmentation as its pages load it), over Ant Media's WebSocket signalling,
// in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), and prints one
// JSON line: what happened. Exit code 0 when every step passed:
//
//   1. `publish(streamId, token)` -> `publish_started`, then `--seconds` of sending (frames
//      encoded, H.264, audio packets);
//   2. `stop(streamId)` -> `publish_finished`.
//
//   node antmedia_publish.mjs WS_URL STREAM_ID [--seconds S] [--timeout S] [--token JWT]
//
// The page is served from a local HTTP server on port 0 (another origin than the server).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const [wsUrl, streamId] = args;
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const seconds = Number(opt('--seconds', '10'));
const timeoutS = Number(opt('--timeout', '60'));
const token = opt('--token', '');

const here = path.dirname(fileURLToPath(import.meta.url));
const files = {
  '/selfie_segmentation.js': path.join(here, 'node_modules/@mediapipe/selfie_segmentation/selfie_segmentation.js'),
  '/webrtc_adaptor.js': path.join(here, 'node_modules/@antmedia/webrtc_adaptor/dist/browser/webrtc_adaptor.js'),
};
const page = `<!doctype html><meta charset=utf-8><title>antmedia publish</title>
<script src="/selfie_segmentation.js"></script>
<script src="/webrtc_adaptor.js"></script>
<video id=localVideo autoplay muted playsinline></video>`;
const server = http.createServer((req, res) => {
  const file = files[req.url];
  if (file) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(fs.readFileSync(file));
  } else if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  } else {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--allow-loopback-in-peer-connection',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
});
const out = { ok: false, steps: {} };
const deadline = Date.now() + timeoutS * 1000;
try {
  const tab = await browser.newPage();
  tab.on('console', (m) => { if (m.type() === 'error') (out.console ||= []).push(m.text()); });
  tab.on('pageerror', (e) => (out.pageErrors ||= []).push(String((e && e.stack) || e).slice(0, 600)));
  await tab.goto(origin);
  await tab.evaluate(({ wsUrl }) => {
    window.events = [];
    window.errors = [];
    window.adaptor = new window.webrtc_adaptor.WebRTCAdaptor({
      websocket_url: wsUrl,
      mediaConstraints: { video: { width: 640, height: 360, frameRate: 30 }, audio: true },
      sdp_constraints: { OfferToReceiveAudio: false, OfferToReceiveVideo: false },
      localVideoId: 'localVideo',
      callback: (info) => { window.events.push({ info, at: performance.now() }); },
      callbackError: (error, message) => {
        window.errors.push({ error: String(error), message: typeof message === 'string' ? message : JSON.stringify(message), at: performance.now() });
      },
    });
  }, { wsUrl });

  const state = () => tab.evaluate(() => ({ events: window.events.map((e) => e.info), errors: window.errors }));
  const waitFor = async (what, fn, arg) => {
    for (;;) {
      const v = await tab.evaluate(fn, arg);
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await state())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const sent = async () => tab.evaluate(async (id) => {
    const pc = window.adaptor.remotePeerConnection[id];
    if (!pc) return {};
    const stats = await pc.getStats();
    const o = { connection: pc.connectionState };
    stats.forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        Object.assign(o, { framesEncoded: r.framesEncoded, videoPackets: r.packetsSent,
          plis: r.pliCount, nacks: r.nackCount, width: r.frameWidth, height: r.frameHeight,
          codec: r.codecId ? (stats.get(r.codecId) || {}).mimeType : null });
      }
      if (r.type === 'outbound-rtp' && r.kind === 'audio') {
        Object.assign(o, { audioPackets: r.packetsSent,
          audioCodec: r.codecId ? (stats.get(r.codecId) || {}).mimeType : null });
      }
    });
    return o;
  }, streamId);

  await waitFor('initialized', () => window.events.some((e) => e.info === 'initialized'));
  const t0 = await tab.evaluate(({ id, token }) => {
    const t = performance.now();
    window.adaptor.publish(id, token);
    return t;
  }, { id: streamId, token });
  const started = await waitFor('publish_started',
    (t0) => window.events.find((e) => e.info === 'publish_started' && e.at >= t0) || window.errors.find((e) => e.at >= t0), t0);
  if (started.error) throw new Error(`publish refused: ${JSON.stringify(started)}`);
  out.steps.publishStartedMs = Math.round(started.at - t0);
  const until = Date.now() + seconds * 1000;
  for (;;) {
    Object.assign(out, await sent());
    if (Date.now() >= until) break;
    if (out.connection === 'failed') throw new Error('connection failed: ' + JSON.stringify(out));
    await new Promise((r) => setTimeout(r, 200));
  }
  const tStop = await tab.evaluate((id) => { const t = performance.now(); window.adaptor.stop(id); return t; }, streamId);
  await waitFor('publish_finished', (t) => window.events.some((e) => e.info === 'publish_finished' && e.at >= t), tStop);
  out.steps.finished = true;
  Object.assign(out, await state());
  out.ok = out.framesEncoded > 0 && out.audioPackets > 0;
  await tab.evaluate(() => window.adaptor.closeWebSocket());
} catch (e) {
  out.error = String(e && e.message || e);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
