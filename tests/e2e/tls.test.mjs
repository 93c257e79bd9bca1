// Chromium as a wss:// client of wsrelay's TLS listener (issue 14). Run by
// tests/e2e/run.sh, which starts a wsrelay with `server.tls` (a certificate
// made there with openssl) and sets E2E_TLS_DATA and E2E_TLS_SPKI (the
// certificate's public-key pin). The browser trusts that one key only
// (--ignore-certificate-errors-spki-list): without the pin the same
// connection must fail, so the test shows real certificate checking.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const PORT = process.env.E2E_TLS_DATA.split(':').pop();
const URL = `wss://localhost:${PORT}/ws/echo`;

async function attempt(pinned) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wsrelay-e2e-tls-'));
  const args = [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost',
  ];
  if (pinned) args.push(`--ignore-certificate-errors-spki-list=${process.env.E2E_TLS_SPKI}`);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.E2E_CHROMIUM,
    headless: true,
    args,
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    return await page.evaluate(async (url) => {
      const ws = new WebSocket(url);
      const opened = await new Promise((ok) => {
        ws.onopen = () => ok(true);
        ws.onerror = () => ok(false);
      });
      if (!opened) return { opened };
      const echoes = [];
      for (let i = 0; i < 5; i += 1) {
        const got = new Promise((ok) => { ws.onmessage = (e) => ok(e.data); });
        ws.send(`browser ${i}`);
        echoes.push(await got);
      }
      const closed = new Promise((ok) => { ws.onclose = (e) => ok(e.code); });
      ws.close(1000);
      return { opened, echoes, code: await closed };
    }, URL);
  } finally {
    await context.close();
  }
}

try {
  const untrusted = await attempt(false);
  assert.equal(untrusted.opened, false, 'a certificate the browser does not trust must fail');
  const trusted = await attempt(true);
  assert.equal(trusted.opened, true, 'the pinned certificate must be accepted');
  assert.deepEqual(trusted.echoes, [0, 1, 2, 3, 4].map((i) => `browser ${i}`));
  assert.equal(trusted.code, 1000);
  console.log(`ok - chromium over wss:// (${URL}): untrusted refused, pinned certificate echoed 5 messages, closed 1000`);
} catch (e) {
  console.error(`e2e-tls: FAILED: ${e.stack || e}`);
  process.exit(1);
}
