// Opens a node's web console (`/#/cluster`) in headless Chromium and waits until the nodes table
// lists every expected node (alive). Prints one JSON line; exit code 0 on success.
//
//   node console.mjs http://HOST:PORT/ name1,name2,... [--timeout S]
import { chromium } from 'playwright-core';

const [base, namesArg] = process.argv.slice(2);
const names = namesArg.split(',');
const ti = process.argv.indexOf('--timeout');
const timeoutMs = 1000 * Number(ti > 0 ? process.argv[ti + 1] : 30);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});
const out = { ok: false, seen: [] };
try {
  const page = await browser.newPage();
  await page.goto(new URL('/#/cluster', base).href);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await page.$$eval('#nodes tbody tr[data-node]', (trs) => trs.map((tr) => ({
      name: tr.dataset.node, state: tr.children[3].textContent, role: tr.children[1].textContent,
    })));
    out.seen = rows;
    out.streams = await page.$$eval('#streams tbody tr[data-stream]', (trs) => trs.map((tr) => tr.dataset.stream));
    if (names.every((n) => rows.some((r) => r.name === n && r.state.startsWith('alive')))) {
      out.ok = true;
      break;
    }
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  out.title = await page.title();
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
