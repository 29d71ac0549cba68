// Plays a stream in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// with Ant Media's own browser client, @antmedia/webrtc_adaptor (its dist bundle, unchanged,
// after @mediapipe/selfie_segmentation as its pages load it), over Ant Media's WebSocket
// signalling, and prints one JSON line: what happened. Exit code 0 when every step passed:
//
//   1. `play` -> `play_started` and `--frames` decoded video frames (`ttffMs`: from `play` to
//      the first decoded frame);
//   2. `getStreamInfo` -> `streamInformation` with the stream's width;
//   3. `stop` -> `play_finished`, then `play` again on the same socket -> frames again;
//   4. `play` of `--missing` (a stream that is not live) -> the error `no_stream_exist`.
//
// With `--wait-height H`, step 1 also waits until the decoded picture is H lines high (a
// B-frame source replaced by a rendition). With `--force ASK:EXPECT,...`, after step 1 each
// `forceStreamQuality(streamId, ASK)` must make the decoded frameHeight EXPECT (`steps.force`:
// the time each took); then `--force-bad H` (no such rendition) must answer an error.
//
//   node antmedia_play.mjs WS_URL STREAM_ID [--frames N] [--timeout S] [--token JWT]
//                          [--missing STREAM_ID] [--wait-height H] [--force 240:240,0:360]
//                          [--force-bad H]
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
const frames = Number(opt('--frames', '30'));
const timeoutS = Number(opt('--timeout', '60'));
const token = opt('--token', '');
const missing = opt('--missing', null);
const waitHeight = opt('--wait-height', null);
const force = (opt('--force', '') || '').split(',').filter((x) => x).map((x) => x.split(':').map(Number));
const forceBad = opt('--force-bad', null);

const here = path.dirname(fileURLToPath(import.meta.url));
const files = {
  '/selfie_segmentation.js': path.join(here, 'node_modules/@mediapipe/selfie_segmentation/selfie_segmentation.js'),
  '/webrtc_adaptor.js': path.join(here, 'node_modules/@antmedia/webrtc_adaptor/dist/browser/webrtc_adaptor.js'),
};
const page = `<!doctype html><meta charset=utf-8><title>antmedia play</title>
<script src="/selfie_segmentation.js"></script>
<script src="/webrtc_adaptor.js"></script>
<video id=remoteVideo autoplay playsinline></video>`;
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
    '--use-fake-ui-for-media-stream', '--mute-audio', '--autoplay-policy=no-user-gesture-required'],
});
const out = { ok: false, steps: {} };
const deadline = Date.now() + timeoutS * 1000;
try {
  const tab = await browser.newPage();
  tab.on('console', (m) => { if (m.type() === 'error') (out.console ||= []).push(m.text()); });
  tab.on('pageerror', (e) => (out.pageErrors ||= []).push(String(e)));
  await tab.goto(origin);
  await tab.evaluate(({ wsUrl }) => {
    window.events = [];
    window.errors = [];
    window.adaptor = new window.webrtc_adaptor.WebRTCAdaptor({
      websocket_url: wsUrl,
      isPlayMode: true,
      mediaConstraints: { video: false, audio: false },
      sdp_constraints: { OfferToReceiveAudio: false, OfferToReceiveVideo: true },
      remoteVideoId: 'remoteVideo',
      callback: (info, obj) => {
        const e = { info, at: performance.now() };
        if (info === 'streamInformation') e.obj = obj;
        window.events.push(e);
      },
      callbackError: (error, message) => {
        window.errors.push({ error: String(error), message: typeof message === 'string' ? message : JSON.stringify(message), at: performance.now() });
      },
    });
  }, { wsUrl });

  const waitFor = async (what, fn, arg) => {
    for (;;) {
      const v = await tab.evaluate(fn, arg);
      if (v) return v;
      if (Date.now() > deadline) {
        const state = await tab.evaluate(() => ({ events: window.events.map((e) => e.info), errors: window.errors }));
        throw new Error(`timed out waiting for ${what}: ${JSON.stringify(state)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const decoded = async () => tab.evaluate(async (id) => {
    const pc = window.adaptor.remotePeerConnection[id];
    if (!pc) return { framesDecoded: 0 };
    const stats = await pc.getStats();
    let v = null;
    let a = null;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') v = r;
      if (r.type === 'inbound-rtp' && r.kind === 'audio') a = r;
    });
    return { framesDecoded: v ? (v.framesDecoded || 0) : 0, width: v ? v.frameWidth : null,
      height: v ? v.frameHeight : null,
      ice: pc.iceConnectionState, codec: v && v.codecId ? (stats.get(v.codecId) || {}).mimeType : null,
      // Chrome reports audio energy only for an element that is not muted (the browser runs
      // with --mute-audio instead).
      audioCodec: a && a.codecId ? (stats.get(a.codecId) || {}).mimeType : null,
      audioEnergy: a ? (a.totalAudioEnergy || 0) : 0 };
  }, streamId);
  // Plays until `n` frames were decoded; returns the step's figures.
  const playUntilFrames = async (n) => {
    const t0 = await tab.evaluate(({ id, token }) => {
      window.t0 = performance.now();
      window.adaptor.play(id, token);
      return window.t0;
    }, { id: streamId, token });
    let s;
    let ttff = null;
    for (;;) {
      s = await decoded();
      if (s.framesDecoded > 0 && ttff === null) ttff = (await tab.evaluate(() => performance.now())) - t0;
      if (s.framesDecoded >= n) break;
      if (Date.now() > deadline) {
        const state = await tab.evaluate(() => ({ events: window.events.map((e) => e.info), errors: window.errors }));
        throw new Error(`timed out waiting for frames: ${JSON.stringify({ ...s, ...state })}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const started = await waitFor('play_started', (t0) => window.events.find((e) => e.info === 'play_started' && e.at >= t0), t0);
    return { ...s, ttffMs: Math.round(ttff), playStartedMs: Math.round(started.at - t0) };
  };

  await waitFor('initialized', () => window.events.some((e) => e.info === 'initialized'));
  out.steps.first = await playUntilFrames(frames);
  // The stream's audio, as Opus with energy (a sine tone).
  for (;;) {
    const s = await decoded();
    out.steps.first.audioCodec = s.audioCodec;
    out.steps.first.audioEnergy = s.audioEnergy;
    if (s.audioEnergy > 0 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }

  // Waits until the decoded picture is `h` lines high; returns the ms it took.
  const untilHeight = async (h) => {
    const t = Date.now();
    for (;;) {
      const s = await decoded();
      if (s.height === h) return Date.now() - t;
      if (Date.now() > deadline) throw new Error(`timed out waiting for frameHeight ${h}: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  if (waitHeight !== null) out.steps.first.heightAfterMs = await untilHeight(Number(waitHeight));
  if (force.length) {
    out.steps.force = [];
    for (const [ask, expect] of force) {
      const t = performance.now();
      await tab.evaluate(({ id, ask }) => window.adaptor.forceStreamQuality(id, ask), { id: streamId, ask });
      const ms = await untilHeight(expect);
      const before = (await decoded()).framesDecoded;
      // Still playing at the new height.
      for (;;) {
        const s = await decoded();
        if (s.framesDecoded >= before + 15 && s.height === expect) break;
        if (Date.now() > deadline) throw new Error(`frames stopped after forcing ${ask}: ${JSON.stringify(s)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      out.steps.force.push({ ask, height: expect, ms, errors: await tab.evaluate((t) => window.errors.filter((e) => e.at >= t), t) });
    }
  }
  if (forceBad !== null) {
    const t = await tab.evaluate(({ id, h }) => { const t = performance.now(); window.adaptor.forceStreamQuality(id, h); return t; }, { id: streamId, h: Number(forceBad) });
    const e = await waitFor('an error for a height the stream has not', (t) => window.errors.find((e) => e.at >= t), t);
    out.steps.forceBad = e.error;
  }

  await tab.evaluate((id) => window.adaptor.getStreamInfo(id), streamId);
  const info = await waitFor('streamInformation', () => window.events.find((e) => e.info === 'streamInformation'));
  out.steps.streamInfo = info.obj.streamInfo;

  const tStop = await tab.evaluate((id) => { const t = performance.now(); window.adaptor.stop(id); return t; }, streamId);
  await waitFor('play_finished', (t) => window.events.some((e) => e.info === 'play_finished' && e.at >= t), tStop);
  out.steps.stopped = true;
  out.steps.again = await playUntilFrames(Math.max(1, Math.floor(frames / 2)));

  if (missing) {
    const t = await tab.evaluate((id) => { const t = performance.now(); window.adaptor.play(id, ''); return t; }, missing);
    const e = await waitFor('no_stream_exist', (t) => window.errors.find((e) => e.at >= t), t);
    out.steps.missing = e.error;
    await tab.evaluate((id) => window.adaptor.stop(id), missing);
  }
  out.errors = await tab.evaluate(() => window.errors);
  out.events = await tab.evaluate(() => window.events.map((e) => e.info));
  out.ok = out.steps.first.framesDecoded >= frames && out.steps.again.framesDecoded >= 1
    && (!missing || out.steps.missing === 'no_stream_exist');
  await tab.evaluate(() => window.adaptor.closeWebSocket());
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
