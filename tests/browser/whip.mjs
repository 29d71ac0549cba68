// Publishes Chromium's fake camera and microphone over WHIP (RFC 9725) with a plain
// RTCPeerConnection, in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core),
// and prints one JSON line: what happened. Exit code 0 when the offer was answered (201), the
// connection came up and `--seconds` of media were sent.
//
//   node whip.mjs WHIP_URL [--seconds S] [--timeout S] [--token JWT] [--no-delete] [--offer-only]
//
// The client offers sendonly H.264 video (the only codec kept) and Opus audio, POSTs the offer
// without waiting for candidates (the server is ICE-lite and learns the browser's address from
// its checks), sets the answer, then sends for `--seconds` while polling getStats (frames
// encoded, packets sent, NACKs and PLIs received). At the end it DELETEs the session resource
// (`deleteStatus`) unless --no-delete (then the browser just goes away: the server's idle timeout
// ends the stream). --offer-only POSTs and prints the answer's status and body without media.
import http from 'node:http';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const url = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const seconds = Number(opt('--seconds', '10'));
const timeoutS = Number(opt('--timeout', '60'));
const token = opt('--token', null);
const doDelete = !args.includes('--no-delete');
const offerOnly = args.includes('--offer-only');

const page = `<!doctype html><meta charset=utf-8><title>whip</title>`;
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
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
});
const out = { ok: false };
let code = 1;
try {
  const tab = await browser.newPage();
  tab.on('console', (m) => { if (m.type() === 'error') (out.console ||= []).push(m.text()); });
  await tab.goto(origin);
  const posted = await tab.evaluate(async ({ url, token }) => {
    const media = await navigator.mediaDevices.getUserMedia({
      video: { width: 640, height: 360, frameRate: 30 }, audio: true });
    const pc = new RTCPeerConnection();
    window.pc = pc;
    for (const track of media.getTracks()) {
      const t = pc.addTransceiver(track, { direction: 'sendonly' });
      if (track.kind === 'video') {
        const h264 = RTCRtpSender.getCapabilities('video').codecs
          .filter((c) => c.mimeType === 'video/H264' || c.mimeType === 'video/rtx');
        if (h264.some((c) => c.mimeType === 'video/H264')) t.setCodecPreferences(h264);
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    const headers = { 'content-type': 'application/sdp' };
    if (token) headers.authorization = 'Bearer ' + token;
    const r = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
    const body = await r.text();
    const res = { status: r.status, location: r.headers.get('location'), etag: r.headers.get('etag'),
      contentType: r.headers.get('content-type') };
    if (r.status !== 201) return { ...res, body };
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    window.location_ = new URL(res.location, url).href;
    return res;
  }, { url, token });
  out.post = posted;
  if (posted.status === 201 && !offerOnly) {
    const deadline = Date.now() + timeoutS * 1000;
    let connectedAt = null;
    for (;;) {
      const s = await tab.evaluate(async () => {
        const stats = await window.pc.getStats();
        const o = { connection: window.pc.connectionState };
        stats.forEach((r) => {
          if (r.type === 'outbound-rtp' && r.kind === 'video') {
            Object.assign(o, { framesEncoded: r.framesEncoded, videoPackets: r.packetsSent,
              nacks: r.nackCount, plis: r.pliCount, width: r.frameWidth, height: r.frameHeight,
              codec: r.codecId ? (stats.get(r.codecId) || {}).mimeType : null });
          }
          if (r.type === 'outbound-rtp' && r.kind === 'audio') {
            Object.assign(o, { audioPackets: r.packetsSent,
              audioCodec: r.codecId ? (stats.get(r.codecId) || {}).mimeType : null });
          }
        });
        return o;
      });
      Object.assign(out, s);
      if (s.connection === 'connected' && connectedAt === null) connectedAt = Date.now();
      if (connectedAt !== null && Date.now() - connectedAt >= seconds * 1000) break;
      if (s.connection === 'failed') throw new Error('connection failed: ' + JSON.stringify(s));
      if (Date.now() > deadline) throw new Error('timed out: ' + JSON.stringify(s));
      await new Promise((r) => setTimeout(r, 200));
    }
    if (doDelete) {
      out.deleteStatus = await tab.evaluate(async ({ token }) => {
        const headers = token ? { authorization: 'Bearer ' + token } : {};
        return (await fetch(window.location_, { method: 'DELETE', headers })).status;
      }, { token });
    }
    out.ok = out.framesEncoded > 0 && (!doDelete || out.deleteStatus === 200);
  } else {
    out.ok = offerOnly;
  }
  code = out.ok ? 0 : 1;
} catch (e) {
  out.error = String(e && e.message || e);
}
console.log(JSON.stringify(out));
await browser.close();
server.close();
process.exit(code);
