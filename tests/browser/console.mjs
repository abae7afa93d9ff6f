// The admin console in a real browser: Debian's Chromium (/usr/bin/chromium) driven by
// playwright-core (no downloaded browser), loopback only. Run by tests/e2e/test_admin_console.py.
//
// Env: KC_BASE, REALM, MOCK_AUTHORITY (http://127.0.0.1:port of the mock Entra ID), TENANT,
// EXPECTED_PROPS ({"entra-oidc": [{name, label}], ...}: our settings, from the server),
// SCREENSHOTS (docs/screenshots), OUT (result.json and failure screenshots).
// Browser launch, admin login, alerts and the run frame: session.mjs.
import path from 'node:path';
import * as session from './session.mjs';

const KC = process.env.KC_BASE;
const REALM = process.env.REALM;
const EXPECTED = JSON.parse(process.env.EXPECTED_PROPS);
const SHOTS = process.env.SCREENSHOTS;
const OUT = process.env.OUT;
const CONSOLE = `${KC}/admin/master/console/#`;
const result = { steps: [], missingHelp: {}, errorsAfterSave: [], errorsAfterReload: [] };
const log = session.stepLog(result, 'console.mjs');

const browser = await session.launch({ viewport: { width: 1280, height: 900 } });
const { page } = browser;
const alertTexts = (kind) => session.alertTexts(page, kind);
const closeAlerts = () => session.closeAlerts(page);
const waitForAlert = () => session.waitForAlert(page);
async function shot(name) {
  await page.screenshot({ path: path.join(SHOTS, name), type: 'png' });
}

/** Every one of our settings has a help button whose popover shows a non-empty text. */
async function checkHelp(providerId) {
  const missing = [];
  for (const { name, label } of EXPECTED[providerId]) {
    const btn = page.locator(`[data-testid="help-label-config.${name}"], [data-testid="help-label-${label}"]`).first();
    if (!(await btn.count())) { missing.push(`${name}: no help button`); continue; }
    await btn.scrollIntoViewIfNeeded();
    await btn.click();
    const body = page.locator('[class*="c-popover__body"]').last();
    try {
      await body.waitFor({ state: 'visible', timeout: 10_000 });
      const text = (await body.innerText()).trim();
      if (text.length < 10) missing.push(`${name}: help text '${text}'`);
    } catch (e) {
      missing.push(`${name}: no popover`);
    }
    await page.keyboard.press('Escape');
    await body.waitFor({ state: 'hidden', timeout: 10_000 }).catch(() => {});
  }
  return missing;
}

async function save() {
  await closeAlerts();
  await page.locator('[data-testid="idp-details-save"]').click();
  await waitForAlert();
}

/** A full load: on a hash-only navigation the console keeps the realm it had. */
async function nav(route) {
  await page.goto(`${CONSOLE}${route}`);
  await page.reload();
}

async function field(name) {
  const f = page.locator(`[id="config.${name}"]`).first();
  await f.scrollIntoViewIfNeeded();
  return f;
}

await session.run(browser, result, OUT, async () => {
  // --- Log in as admin.
  await session.adminLogin(page, KC);
  log('logged in');

  // --- Create an entra-oidc IdP through the UI.
  await nav(`/${REALM}/identity-providers/entra-oidc/add`);
  await page.locator('[id="config.entraTenant"]').waitFor();
  await page.getByText(REALM, { exact: true }).first().waitFor(); // the realm selector shows the test realm
  result.missingHelp['entra-oidc'] = await checkHelp('entra-oidc');
  await page.fill('#alias', 'entra');
  await page.fill('[id="config.clientId"]', '00000000-0000-0000-0000-0000000000c1');
  await page.fill('[id="config.clientSecret"]', 'mock-secret-c1');
  await page.fill('[id="config.entraTenant"]', process.env.TENANT);
  await page.fill('[id="config.entraAuthorityHost"]', process.env.MOCK_AUTHORITY);
  await page.locator('#alias').scrollIntoViewIfNeeded();
  await shot('idp-create.png');
  await page.locator('[data-testid="createProvider"]').click();
  await waitForAlert();
  const createErrors = await alertTexts('danger');
  if (createErrors.length) throw new Error(`create failed: ${createErrors.join(' | ')}`);
  await page.waitForURL(/identity-providers\/entra-oidc\/entra\/settings/);
  log('created entra-oidc IdP "entra"');

  // --- Reopen, check the derived endpoints are on the page, edit, save, reload.
  await nav(`/${REALM}/identity-providers`);
  await page.getByRole('link', { name: 'entra', exact: true }).click();
  await page.locator('[id="config.minValidityToken"]').waitFor();
  const tokenUrl = await page.locator('[name="config.tokenUrl"]').first().inputValue();
  const authUrl = await page.locator('[name="config.authorizationUrl"]').first().inputValue();
  result.detailsTokenUrl = tokenUrl;
  result.detailsAuthorizationUrl = authUrl;
  if (!tokenUrl.endsWith('/oauth2/v2.0/token') || !authUrl.endsWith('/oauth2/v2.0/authorize')) {
    throw new Error(`endpoints not filled in on the details page: ${authUrl} ${tokenUrl}`);
  }
  const detailsMissing = await checkHelp('entra-oidc');
  if (detailsMissing.length) result.missingHelp['entra-oidc'].push(...detailsMissing.map((m) => `details page: ${m}`));
  await (await field('minValidityToken')).fill('120');
  await save();
  result.errorsAfterSave = await alertTexts('danger');
  await (await field('minValidityToken')).scrollIntoViewIfNeeded();
  await shot('idp-details.png');
  log(`saved: ${(await alertTexts('success')).join(' | ')}`);
  await page.reload();
  await page.locator('[id="config.minValidityToken"]').waitFor();
  await page.waitForTimeout(1500);
  result.errorsAfterReload = await alertTexts('danger');
  result.minValidityAfterReload = await page.locator('[id="config.minValidityToken"]').inputValue();
  if (result.minValidityAfterReload !== '120') throw new Error(`edit lost on reload: ${result.minValidityAfterReload}`);
  log('reloaded, edit kept');

  // --- Misconfiguration shown where it is typed: offline_access switched off.
  const offline = page.locator('#addOfflineAccess');
  await offline.scrollIntoViewIfNeeded();
  await page.locator('label:has(#addOfflineAccess)').click();
  await save();
  result.offlineAccessError = (await alertTexts('danger')).join(' | ');
  await offline.scrollIntoViewIfNeeded();
  await shot('idp-error-offline-access.png');
  log(`offline_access off: ${result.offlineAccessError}`);
  await page.reload();
  await page.locator('[id="config.entraAuthorityHost"]').waitFor();

  // --- ... and a plain-http authority host outside loopback.
  await (await field('entraAuthorityHost')).fill('http://login.example.com');
  await save();
  result.httpAuthorityError = (await alertTexts('danger')).join(' | ');
  log(`http authority: ${result.httpAuthorityError}`);
  await page.reload();

  // --- fresh-oidc: create with explicit endpoints, reopen, save.
  await nav(`/${REALM}/identity-providers/fresh-oidc/add`);
  await page.locator('[id="config.authorizationUrl"]').first().waitFor();
  result.missingHelp['fresh-oidc'] = await checkHelp('fresh-oidc');
  await page.fill('#alias', 'generic');
  await page.fill('[id="config.clientId"]', 'generic-client');
  await page.fill('[id="config.clientSecret"]', 'generic-secret');
  await page.locator('[id="config.authorizationUrl"]').first().fill('https://idp.example.org/authorize');
  await page.locator('[id="config.tokenUrl"]').first().fill('https://idp.example.org/token');
  await page.locator('[data-testid="createProvider"]').click();
  await waitForAlert();
  const freshErrors = await alertTexts('danger');
  if (freshErrors.length) throw new Error(`fresh-oidc create failed: ${freshErrors.join(' | ')}`);
  await page.waitForURL(/identity-providers\/fresh-oidc\/generic\/settings/);
  await page.locator('[id="config.minValidityToken"]').waitFor();
  await save();
  const freshSave = await alertTexts('danger');
  if (freshSave.length) result.errorsAfterSave.push(...freshSave.map((e) => `fresh-oidc: ${e}`));
  await page.reload();
  await page.locator('[id="config.minValidityToken"]').waitFor();
  await page.waitForTimeout(1500);
  result.errorsAfterReload.push(...(await alertTexts('danger')).map((e) => `fresh-oidc: ${e}`));
  log('fresh-oidc created, saved, reloaded');

  // --- Provider info: our version, the native library's state and path.
  await nav('/master/providers');
  const tab = page.getByRole('tab', { name: /Provider info/i });
  await tab.waitFor({ timeout: 60_000 }).catch(() => {});
  if (await tab.count()) await tab.first().click();
  const search = page.locator('input[type=search], input[aria-label*="earch"], input[placeholder*="earch"]').first();
  await search.waitFor();
  await search.fill('identity_provider');
  await page.keyboard.press('Enter');
  const cell = page.getByText('nativeLibraryState', { exact: false }).first();
  if (!(await cell.isVisible().catch(() => false))) {
    const toggles = page.locator('button[id*="expandable"], button[aria-label="Details"]');
    for (const t of await toggles.all()) await t.click().catch(() => {});
  }
  await cell.waitFor({ timeout: 30_000 });
  await cell.scrollIntoViewIfNeeded();
  const text = await page.locator('main, #kc-main-content-page-container, body').first().innerText();
  const grab = (k) => (text.match(new RegExp(`${k}\\s+([^\\s]+)`)) || [])[1];
  result.providerInfo = {
    providerVersion: grab('providerVersion'),
    nativeLibraryState: grab('nativeLibraryState'),
    nativeLibraryPath: grab('nativeLibraryPath'),
  };
  await shot('provider-info.png');
  log(`provider info: ${JSON.stringify(result.providerInfo)}`);
});
