// The "fresh-token" tab on a user's page in the admin console (Keycloak's declarative UI,
// feature declarative-ui), in Debian's Chromium driven by playwright-core, loopback only.
// Run by tests/e2e/test_admin_console.py.
//
// Env: KC_BASE, REALM, USER_ID (a user who signed in through our IdP), SCREENSHOTS, OUT.
// Writes OUT/result.json (the field values read at each step) and OUT/tab-*.html (the page
// HTML, which the test searches for token values).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const KC = process.env.KC_BASE;
const REALM = process.env.REALM;
const USER_ID = process.env.USER_ID;
const SHOTS = process.env.SCREENSHOTS;
const OUT = process.env.OUT;
const CONSOLE = `${KC}/admin/master/console/#`;
const FIELDS = ['id', 'freshTokenUser', 'freshTokenCheckedAt', 'freshTokenStored', 'freshTokenAccessTokenValidUntil',
  'freshTokenLastRefreshed'];
const result = { steps: [], errors: [] };
const log = (m) => { result.steps.push(m); console.log(`[user_token_tab.mjs] ${m}`); };

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fresh-token-chromium-'));
const ctx = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 180_000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 1000 },
});
ctx.setDefaultTimeout(60_000);
const page = ctx.pages()[0] || await ctx.newPage();
await ctx.route('**/*', (route) => {
  const u = new URL(route.request().url());
  if (['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) || u.protocol === 'data:') return route.continue();
  return route.abort();
});

const alertTexts = async (kind) => (await page.locator(`[class*="c-alert"][class*="m-${kind}"]`).allInnerTexts())
  .map((t) => t.replace(/\s+/g, ' ').trim()).filter(Boolean);
async function closeAlerts() {
  for (const b of await page.locator('[class*="c-alert__action"] button').all()) await b.click().catch(() => {});
}

/** Opens the user's page (full load) and the fresh-token tab by clicking it. */
async function openTab() {
  await page.goto(`${CONSOLE}/${REALM}/users/${USER_ID}/settings`);
  await page.reload();
  const tab = page.locator('a, button').filter({ hasText: /^fresh-token$/ }).first();
  await tab.waitFor({ timeout: 120_000 });
  await tab.click();
  await page.waitForURL(new RegExp(`/users/${USER_ID}/fresh-token`));
  await page.locator('[data-testid="freshTokenStored"]').first().waitFor();
  await page.waitForTimeout(1000);
}

async function readFields() {
  const v = {};
  for (const f of FIELDS) v[f] = await page.locator(`[data-testid="${f}"]`).first().inputValue();
  v.clear = await page.locator('#freshTokenClear').isChecked();
  return v;
}

/** The page HTML plus every field value (React keeps input values out of the DOM attributes). */
async function dump(name) {
  const values = await page.$$eval('input, textarea', (els) => els.map((e) => e.value));
  fs.writeFileSync(path.join(OUT, name), `${await page.content()}\n<!-- field values -->\n${JSON.stringify(values)}\n${await page.innerText('body')}`);
}

async function save() {
  await closeAlerts();
  await page.locator('[data-testid="save"]').first().click();
  await page.locator('[class*="c-alert"][class*="m-success"], [class*="c-alert"][class*="m-danger"]').first()
    .waitFor({ state: 'visible', timeout: 60_000 });
  const errors = await alertTexts('danger');
  result.errors.push(...errors);
  if (errors.length) throw new Error(`save failed: ${errors.join(' | ')}`);
}

try {
  await page.goto(`${KC}/admin/master/console/`);
  await page.locator('input[name=username]').waitFor({ timeout: 180_000 });
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', 'admin');
  await page.locator('#kc-login, button[type=submit]').first().click();
  await page.locator('#nav-toggle').waitFor({ timeout: 180_000 });
  log('logged in');

  // Open the tab, Save (computes the status of this user server-side), open it again.
  await openTab();
  result.beforeSave = await readFields();
  log(`tab opened: ${JSON.stringify(result.beforeSave)}`);
  await save();
  log('saved (status computed)');
  await openTab();
  result.status = await readFields();
  await dump('tab-status.html');
  await page.locator('[data-testid="freshTokenStored"]').first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(SHOTS, 'user-fresh-token-tab.png'), type: 'png' });
  log(`status: ${JSON.stringify(result.status)}`);

  // Clear: switch on, Save, open again.
  await page.locator('label:has(#freshTokenClear)').click();
  await save();
  log('saved with clear on');
  await openTab();
  result.afterClear = await readFields();
  await dump('tab-cleared.html');
  await page.locator('[data-testid="freshTokenStored"]').first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(SHOTS, 'user-fresh-token-tab-cleared.png'), type: 'png' });
  log(`after clear: ${JSON.stringify(result.afterClear)}`);
  result.ok = true;
} catch (e) {
  result.ok = false;
  result.failure = String(e && e.stack || e);
  console.error(result.failure);
  await page.screenshot({ path: path.join(OUT, 'failure.png'), fullPage: true }).catch(() => {});
  fs.writeFileSync(path.join(OUT, 'failure.html'), await page.content().catch(() => ''));
} finally {
  fs.writeFileSync(path.join(OUT, 'result.json'), JSON.stringify(result, null, 2));
  await ctx.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(result.ok ? 0 : 1);
