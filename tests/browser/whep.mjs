// Plays a WHEP URL in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// with a plain RTCPeerConnection and prints one JSON line: what happened. Exit code 0 when the
// answer was set and `--frames` video frames were decoded.
//
//   node whep.mjs WHEP_URL [--frames N] [--timeout S] [--token JWT] [--no-delete] [--audio] [--no-audio]
//
// The client offers recvonly video and audio (the server may refuse audio; --no-audio: video
// only), POSTs the offer without waiting for candidates (the server is ICE-lite and learns the
// browser's address from its checks), sets the answer, and polls getStats: `ttffMs` is the time
// from the POST to the first decoded frame. At the end it DELETEs the session resource
// (`deleteStatus`).
//
// Audio: both tracks play in one unmuted <video> (Chromium runs with --mute-audio, so nothing is
// heard but the audio is decoded and its energy measured). `audio` reports the inbound audio
// (codec, packets, totalAudioEnergy) and `avSyncMs` the median of audio minus video
// estimatedPlayoutTimestamp over the later half of 5 s (positive: audio plays later than the video of the
// same capture time); with --audio, success also needs audio energy > 0.
//
// The page is served from a local HTTP server on port 0, so the WHEP requests are cross-origin
// and exercise the server's CORS preflight and exposed headers (Location, ETag).
import http from 'node:http';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const url = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const frames = Number(opt('--frames', '30'));
const timeoutS = Number(opt('--timeout', '60'));
const token = opt('--token', null);
const doDelete = !args.includes('--no-delete');
const needAudio = args.includes('--audio');
const offerAudio = !args.includes('--no-audio');

const page = `<!doctype html><meta charset=utf-8><title>whep</title>
<video id=v autoplay playsinline></video>`;
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(page);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--allow-loopback-in-peer-connection',
    '--autoplay-policy=no-user-gesture-required', '--mute-audio'],
});
const out = { ok: false, framesDecoded: 0 };
try {
  const tab = await browser.newPage();
  tab.on('console', (m) => { if (m.type() === 'error') (out.console ||= []).push(m.text()); });
  await tab.goto(origin);
  const started = await tab.evaluate(async ({ url, token, offerAudio }) => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    window.t0 = performance.now();
    window.ttff = null;
    pc.addTransceiver('video', { direction: 'recvonly' });
    if (offerAudio) pc.addTransceiver('audio', { direction: 'recvonly' });
    // One element plays both tracks, whatever streams the answer groups them in.
    const media = new MediaStream();
    window.trackStreams = [];
    pc.ontrack = (e) => {
      window.trackStreams.push(e.track.kind + ':' + e.streams.map((x) => x.id).join(','));
      media.addTrack(e.track);
      const v = document.getElementById('v');
      if (v.srcObject !== media) v.srcObject = media;
    };
    await pc.setLocalDescription(await pc.createOffer());
    const headers = { 'content-type': 'application/sdp' };
    if (token) headers.authorization = 'Bearer ' + token;
    const r = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
    const body = await r.text();
    const res = { status: r.status, location: r.headers.get('location'), etag: r.headers.get('etag'),
      contentType: r.headers.get('content-type') };
    if (r.status !== 201) return { ...res, body };
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    res.audioAnswer = (body.split('\r\nm=').find((m) => m.startsWith('audio')) || '').split('\r\n')[0];
    window.location_ = new URL(res.location, url).href;
    return res;
  }, { url, token, offerAudio });
  Object.assign(out, { post: started });
  if (started.status === 201) {
    const deadline = Date.now() + timeoutS * 1000;
    for (;;) {
      const s = await tab.evaluate(async () => {
        const stats = await window.pc.getStats();
        let v = null;
        stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') v = r; });
        const decoded = v ? (v.framesDecoded || 0) : 0;
        if (decoded > 0 && window.ttff === null) window.ttff = performance.now() - window.t0;
        return { framesDecoded: decoded, ttffMs: window.ttff, ice: window.pc.iceConnectionState,
          connection: window.pc.connectionState, width: v ? v.frameWidth : null,
          height: v ? v.frameHeight : null, packetsLost: v ? v.packetsLost : null,
          codec: v && v.codecId ? (stats.get(v.codecId) || {}).mimeType : null };
      });
      Object.assign(out, s);
      if (s.framesDecoded >= frames) break;
      if (s.connection === 'failed') throw new Error('connection failed: ' + JSON.stringify(s));
      if (Date.now() > deadline) throw new Error('timed out: ' + JSON.stringify(s));
      await new Promise((r) => setTimeout(r, 20));
    }
    // Live phase: frames decoded over the next second, and how long frames waited in the
    // jitter buffer on average (both after the start cache was shown).
    const before = await tab.evaluate(async () => {
      const stats = await window.pc.getStats();
      let v = null;
      stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') v = r; });
      return { frames: v.framesDecoded, delay: v.jitterBufferDelay, emitted: v.jitterBufferEmittedCount,
        nacks: v.nackCount };
    });
    await new Promise((r) => setTimeout(r, 1000));
    const after = await tab.evaluate(async () => {
      const stats = await window.pc.getStats();
      let v = null;
      stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') v = r; });
      return { frames: v.framesDecoded, delay: v.jitterBufferDelay, emitted: v.jitterBufferEmittedCount,
        nacks: v.nackCount, lost: v.packetsLost };
    });
    out.liveFps = after.frames - before.frames;
    out.jitterBufferMs = after.emitted > before.emitted
      ? Math.round(1000 * (after.delay - before.delay) / (after.emitted - before.emitted)) : null;
    out.nackCount = after.nacks;
    out.packetsLost = after.lost;
    // Audio: wait (until the deadline) for decoded audio with energy when asked to; then
    // sample the A/V playout offset.
    const audioStats = () => tab.evaluate(async () => {
      const stats = await window.pc.getStats();
      let a = null;
      let v = null;
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') a = r;
        if (r.type === 'inbound-rtp' && r.kind === 'video') v = r;
      });
      if (!a) return null;
      return { codec: a.codecId ? (stats.get(a.codecId) || {}).mimeType : null,
        packetsReceived: a.packetsReceived, packetsLost: a.packetsLost,
        totalAudioEnergy: a.totalAudioEnergy, totalSamplesReceived: a.totalSamplesReceived,
        concealedSamples: a.concealedSamples, jitterBufferDelay: a.jitterBufferDelay,
        jitterBufferEmittedCount: a.jitterBufferEmittedCount,
        audioTargetDelay: a.jitterBufferTargetDelay, videoTargetDelay: v ? v.jitterBufferTargetDelay : null,
        videoJitterDelay: v ? v.jitterBufferDelay : null, videoEmitted: v ? v.jitterBufferEmittedCount : null,
        audioPlayout: a.estimatedPlayoutTimestamp, videoPlayout: v ? v.estimatedPlayoutTimestamp : null };
    });
    for (;;) {
      out.audio = await audioStats();
      if (!needAudio || (out.audio && out.audio.totalAudioEnergy > 0)) break;
      if (Date.now() > deadline) throw new Error('no audio energy: ' + JSON.stringify(out.audio));
      await new Promise((r) => setTimeout(r, 50));
    }
    if (out.audio) {
      // Playout estimates need the sender reports of both tracks (one a second).
      const syncDeadline = Math.min(deadline, Date.now() + 15000);
      for (;;) {
        const a = await audioStats();
        if ((a && a.audioPlayout && a.videoPlayout) || Date.now() > syncDeadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const offsets = [];
      out.syncTrace = [];
      for (let i = 0; i < 50; i++) {
        const a = await audioStats();
        if (a && a.audioPlayout && a.videoPlayout) offsets.push(a.audioPlayout - a.videoPlayout);
        if (i % 10 === 0 && a) out.syncTrace.push([a.audioPlayout - a.videoPlayout, a.jitterBufferDelay / a.jitterBufferEmittedCount, a.videoJitterDelay / a.videoEmitted]);
        await new Promise((r) => setTimeout(r, 100));
      }
      // The later half: Chromium starts with a deep audio buffer that it drains slowly.
      const settled = offsets.slice(Math.floor(offsets.length / 2)).sort((x, y) => x - y);
      out.avSyncSamples = settled.length;
      out.avSyncMs = settled.length ? settled[Math.floor(settled.length / 2)] : null;
      out.audio = await audioStats();
    }
    out.trackStreams = await tab.evaluate(() => window.trackStreams);
    out.answerVideo = await tab.evaluate(() => window.pc.remoteDescription.sdp.split('\r\n')
      .filter((l) => l.startsWith('m=video') || l.startsWith('a=rtpmap') || l.startsWith('a=fmtp')));
    out.ok = true;
    if (doDelete) {
      out.deleteStatus = await tab.evaluate(async (token) => {
        const headers = token ? { authorization: 'Bearer ' + token } : {};
        const r = await fetch(window.location_, { method: 'DELETE', headers });
        window.pc.close();
        return r.status;
      }, token);
    }
    out.location = await tab.evaluate(() => window.location_);
  }
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
