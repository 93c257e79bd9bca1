// Browser test of the ops UI (issue: ops web UI). Run by tests/e2e/run.sh,
// which starts wsrelay and sets E2E_* variables. Every step asserts; the
// first failure ends the run with a non-zero exit and a screenshot.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ADMIN = process.env.E2E_ADMIN; // 127.0.0.1:port of the admin UI
const DATA = process.env.E2E_DATA; // 127.0.0.1:port of the relay
const OUT = process.env.E2E_OUT;
const EMAIL = process.env.E2E_ADMIN_EMAIL;
const PASSWORD = process.env.E2E_ADMIN_PASSWORD;
const UI = `http://${ADMIN}/`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wsrelay-e2e-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.E2E_CHROMIUM,
  headless: true,
  acceptDownloads: true,
  viewport: { width: 1280, height: 860 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
  ],
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(10000);
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
page.on('dialog', (d) => d.accept()); // confirmations (kill, delete)

let step = 'start';
const shot = (name) => page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
async function run(name, fn) {
  step = name;
  await fn();
  console.log(`ok - ${name}`);
}

/** Opens a WebSocket through wsrelay from the page and leaves it open. */
async function openSession() {
  await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error('connect failed')); });
    (window.__open = window.__open || []).push(ws);
  }, `ws://${DATA}/ws/e2e`);
}

async function login(email, password) {
  await page.goto(UI);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
}

try {
  await run('login page, wrong password, then log in', async () => {
    await page.goto(UI);
    await page.getByRole('heading', { name: 'Log in to wsrelay' }).waitFor();
    await shot('01-login');
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByText('wrong email or password').waitFor();
    await login(EMAIL, PASSWORD);
    await page.locator('.live.on').waitFor(); // /ops connected
  });

  await run('create an endpoint; validation errors shown by their fields', async () => {
    await page.getByRole('link', { name: 'Endpoints' }).click();
    await page.getByRole('button', { name: 'New endpoint' }).click();
    await page.getByLabel('ID (a-z, 0-9, -)').fill('Bad Id');
    await page.getByLabel('Target URL (ws:// or wss://)').fill('http://nowhere');
    await page.getByLabel('Max connections').fill('0');
    await page.getByRole('button', { name: 'Create' }).click();
    for (const f of ['id', 'targetUrl', 'limits.maxConnections']) {
      const err = page.locator(`.field-error[data-for="${f}"]`);
      await err.filter({ hasText: /./ }).waitFor();
      assert.equal(await page.locator(`input[name="${f}"]`).getAttribute('aria-invalid'), 'true', f);
    }
    await shot('02-endpoint-errors');
    await page.getByLabel('ID (a-z, 0-9, -)').fill('e2e');
    await page.getByLabel('Target URL (ws:// or wss://)').fill(`ws://${ADMIN}/echo`);
    await page.getByLabel('Max connections').fill('10');
    await page.getByLabel('Sample payloads').check();
    await page.getByLabel('Sampling percentage').fill('100');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.locator('tr[data-endpoint="e2e"]').waitFor();
    await shot('03-endpoints');
  });

  await run('a WebSocket from the page shows up live, is killed with 1008', async () => {
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
    const echoed = await page.evaluate(async (url) => {
      const ws = new WebSocket(url);
      window.__ws = ws;
      window.__close = null;
      ws.onclose = (e) => { window.__close = { code: e.code, reason: e.reason }; };
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error('connect failed')); });
      const reply = new Promise((ok) => { ws.onmessage = (m) => ok(m.data); });
      ws.send('hello through wsrelay');
      return reply;
    }, `ws://${DATA}/ws/e2e`);
    assert.equal(echoed, 'hello through wsrelay');
    const row = page.locator('#session-table tbody tr');
    await row.first().waitFor();
    assert.equal(await row.count(), 1);
    await page.locator('#session-filter').selectOption('e2e');
    await row.getByText('e2e', { exact: true }).waitFor();
    await shot('04-sessions');
    await row.getByRole('button', { name: 'Kill' }).click();
    await page.waitForFunction(() => window.__close !== null);
    const close = await page.evaluate(() => window.__close);
    assert.deepEqual(close, { code: 1008, reason: 'terminated by operator' });
    await page.getByText('No active sessions.').waitFor();
  });

  await run('error states: session already gone, database down', async () => {
    // The races are forced with answers the API gives in them (404 for a
    // session that ended meanwhile, 503 while the database is away).
    await openSession();
    await page.getByRole('link', { name: 'Sessions' }).click();
    const row = page.locator('#session-table tbody tr').first();
    await row.waitFor();
    await page.route('**/api/sessions/*', (r) => r.fulfill({
      status: 404, contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'not_found', message: 'no active session' } }),
    }));
    await row.getByRole('button', { name: 'Kill' }).click();
    await page.getByText('That session is already gone.').waitFor();
    await page.unroute('**/api/sessions/*');
    await page.route('**/api/endpoints', (r) => r.fulfill({
      status: 503, contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'database_unavailable', message: 'the database is unavailable' } }),
    }));
    await page.getByRole('link', { name: 'Endpoints' }).click();
    await page.getByText('The database is unavailable').first().waitFor();
    await shot('05a-database-down');
    await page.unroute('**/api/endpoints');
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await page.locator('#banner[hidden]').waitFor({ state: 'attached' });
    await page.evaluate(() => { for (const ws of window.__open || []) ws.close(); window.__open = []; });
  });

  await run('samples show text as text and binary as hex', async () => {
    await page.evaluate(async (url) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      await new Promise((ok) => { ws.onopen = ok; });
      const echo = new Promise((ok) => { ws.onmessage = ok; });
      ws.send(new Uint8Array([0, 1, 2, 255]));
      await echo;
      ws.close();
    }, `ws://${DATA}/ws/e2e`);
    await page.getByRole('link', { name: 'Samples' }).click();
    await page.locator('#sample-table td', { hasText: 'hello through wsrelay' }).first().waitFor();
    await page.locator('#sample-table td', { hasText: '00 01 02 ff' }).first().waitFor();
    await shot('05-samples');
  });

  await run('dashboard with per-endpoint figures and latency chart', async () => {
    await page.getByRole('link', { name: 'Dashboard' }).click();
    // A little traffic so the chart has points.
    await page.evaluate(async (url) => {
      const ws = new WebSocket(url);
      await new Promise((ok) => { ws.onopen = ok; });
      for (let i = 0; i < 20; i++) {
        const r = new Promise((ok) => { ws.onmessage = ok; });
        ws.send(`m${i}`);
        await r;
        await new Promise((ok) => setTimeout(ok, 100));
      }
      window.__ws2 = ws;
    }, `ws://${DATA}/ws/e2e`);
    const card = page.locator('section[aria-label="endpoint e2e"]');
    await card.locator('polyline').first().waitFor();
    assert.match(await card.textContent(), /active sessions/);
    await shot('06-dashboard');
  });

  await run('audit entries, pagination, export', async () => {
    await page.getByRole('link', { name: 'Audit' }).click();
    for (const a of ['login.success', 'login.failure', 'endpoint.create', 'session.kill']) {
      await page.locator(`tr[data-action="${a}"]`).first().waitFor();
    }
    await shot('07-audit');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const csv = fs.readFileSync(await download.path(), 'utf8');
    assert.match(csv.split('\n')[0], /^id,at,actor,action/);
    assert.match(csv, /session\.kill/);
    const [nd] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export NDJSON' }).click()]);
    const lines = fs.readFileSync(await nd.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.action === 'endpoint.create' && l.entityId === 'e2e'));
    await page.getByLabel('Action').selectOption('session.kill');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('Page 1 of 1 (1 entries)').waitFor();
  });

  await run('users: add a viewer', async () => {
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByLabel('Email').fill('viewer@e2e.example');
    await page.getByLabel('Password (12+ characters)').fill('viewer-password-1');
    await page.getByLabel('Role').selectOption('viewer');
    await page.getByRole('button', { name: 'Add user' }).click();
    await page.locator('tr[data-user="viewer@e2e.example"]').waitFor();
    await shot('08-users');
  });

  await run('a viewer sees no write controls', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await login('viewer@e2e.example', 'viewer-password-1');
    assert.equal(await page.getByRole('link', { name: 'Users' }).count(), 0);
    await page.getByRole('link', { name: 'Endpoints' }).click();
    await page.locator('tr[data-endpoint="e2e"]').waitFor();
    for (const name of ['New endpoint', 'Edit', 'Delete', 'Disable']) {
      assert.equal(await page.getByRole('button', { name }).count(), 0, name);
    }
    await openSession();
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.locator('#session-table tbody tr').first().waitFor();
    assert.equal(await page.getByRole('button', { name: 'Kill' }).count(), 0);
    await shot('09-viewer-sessions');
  });

  await run('the nodes page lists this node as up', async () => {
    await page.getByRole('link', { name: 'Nodes' }).click();
    await page.getByRole('heading', { name: 'Nodes' }).waitFor();
    const row = page.locator('#node-table tbody tr').first();
    await row.waitFor();
    assert.equal((await row.locator('td').nth(1).textContent()).trim(), 'up');
    await shot('09b-nodes');
  });

  await run('an expired token leads back to the login page', async () => {
    // The tab comes back with a token the server no longer accepts.
    await page.evaluate(() => sessionStorage.setItem('wsrelay.token', 'expired.token.value'));
    await page.goto(`${UI}#/endpoints`);
    await page.reload();
    await page.getByText('Your session has expired; log in again.').waitFor();
    await page.getByRole('heading', { name: 'Log in to wsrelay' }).waitFor();
  });

  await run('log in by keyboard alone', async () => {
    // The login page puts the focus on the email field.
    await page.keyboard.type(EMAIL);
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    // Navigation links are reachable with Tab and follow with Enter.
    await page.getByRole('link', { name: 'Audit' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  });

  await run('phone width', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await openSession();
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.locator('#session-table tbody tr').first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
    await shot('10-phone-sessions');
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await page.locator('section[aria-label="endpoint e2e"]').waitFor();
    await shot('11-phone-dashboard');
  });

  // 400 (validation), 401 (wrong password, expired token), 404 and 503
  // (the error states) are logged by the browser for the API's answers;
  // nothing else may be.
  assert.deepEqual(consoleErrors.filter((e) => !/status of (40[014]|503)/.test(e)), [], 'no script errors');
  console.log(`e2e: all steps passed; screenshots in ${OUT}`);
  await context.close();
} catch (e) {
  console.error(`e2e: FAILED at "${step}": ${e.stack || e}`);
  if (consoleErrors.length) console.error('browser console errors:', consoleErrors);
  await shot('FAILED').catch(() => {});
  await context.close().catch(() => {});
  process.exit(1);
}
