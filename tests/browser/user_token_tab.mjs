// The "fresh-token" tab on a user's page in the admin console (Keycloak's declarative UI,
// feature declarative-ui), in Debian's Chromium driven by playwright-core, loopback only.
// Run by tests/e2e/test_admin_console.py.
//
// Env: KC_BASE, REALM, USER_ID (a user who signed in through our IdP), SCREENSHOTS, OUT.
// Writes OUT/result.json (the field values read at each step) and OUT/tab-*.html (the page
// HTML, which the test searches for token values).
// Browser launch, admin login, alerts and the run frame: session.mjs.
import fs from 'node:fs';
import path from 'node:path';
import * as session from './session.mjs';

const KC = process.env.KC_BASE;
const REALM = process.env.REALM;
const USER_ID = process.env.USER_ID;
const SHOTS = process.env.SCREENSHOTS;
const OUT = process.env.OUT;
const CONSOLE = `${KC}/admin/master/console/#`;
const FIELDS = ['id', 'freshTokenUser', 'freshTokenCheckedAt', 'freshTokenStored', 'freshTokenAccessTokenValidUntil',
  'freshTokenLastRefreshed'];
const result = { steps: [], errors: [] };
const log = session.stepLog(result, 'user_token_tab.mjs');

const browser = await session.launch({ viewport: { width: 1280, height: 1000 } });
const { page } = browser;

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

/** Opens the tab again and records its fields (result[key]), its HTML (OUT/html) and a screenshot (SHOTS/png). */
async function record(key, html, png) {
  await openTab();
  result[key] = await readFields();
  await dump(html);
  await page.locator('[data-testid="freshTokenStored"]').first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(SHOTS, png), type: 'png' });
  return result[key];
}

async function save() {
  await session.closeAlerts(page);
  await page.locator('[data-testid="save"]').first().click();
  await session.waitForAlert(page);
  const errors = await session.alertTexts(page, 'danger');
  result.errors.push(...errors);
  if (errors.length) throw new Error(`save failed: ${errors.join(' | ')}`);
}

await session.run(browser, result, OUT, async () => {
  await session.adminLogin(page, KC);
  log('logged in');

  // Open the tab, Save (computes the status of this user server-side), open it again.
  await openTab();
  result.beforeSave = await readFields();
  log(`tab opened: ${JSON.stringify(result.beforeSave)}`);
  await save();
  log('saved (status computed)');
  log(`status: ${JSON.stringify(await record('status', 'tab-status.html', 'user-fresh-token-tab.png'))}`);

  // Clear: switch on, Save, open again.
  await page.locator('label:has(#freshTokenClear)').click();
  await save();
  log('saved with clear on');
  log(`after clear: ${JSON.stringify(await record('afterClear', 'tab-cleared.html', 'user-fresh-token-tab-cleared.png'))}`);
});
