// What the browser scripts share: Debian's Chromium (/usr/bin/chromium) driven by
// playwright-core (no downloaded browser), loopback only; the admin login; the alert helpers;
// and the run frame (result.json, failure screenshot and HTML in OUT, exit code).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A fresh headless Chromium profile and its first page; requests beyond loopback are aborted. */
export async function launch({ viewport }) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fresh-token-chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 180_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport,
  });
  ctx.setDefaultTimeout(60_000);
  const page = ctx.pages()[0] || await ctx.newPage();
  // Loopback only: anything else is refused before it leaves the browser.
  await ctx.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) || u.protocol === 'data:') return route.continue();
    return route.abort();
  });
  return { ctx, page, userDataDir };
}

/** Signs in to the admin console of `kc` as admin/admin and waits for the console. */
export async function adminLogin(page, kc) {
  await page.goto(`${kc}/admin/master/console/`);
  await page.locator('input[name=username]').waitFor({ timeout: 180_000 });
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', 'admin');
  await page.locator('#kc-login, button[type=submit]').first().click();
  await page.locator('#nav-toggle').waitFor({ timeout: 180_000 });
}

/** The texts of the visible alerts of a kind ('success', 'danger'), whitespace folded. */
export async function alertTexts(page, kind) {
  return (await page.locator(`[class*="c-alert"][class*="m-${kind}"]`).allInnerTexts())
    .map((t) => t.replace(/\s+/g, ' ').trim()).filter(Boolean);
}

export async function closeAlerts(page) {
  for (const b of await page.locator('[class*="c-alert__action"] button').all()) await b.click().catch(() => {});
}

/** Waits for a success or an error alert (what a save ends with). */
export async function waitForAlert(page) {
  await page.locator('[class*="c-alert"][class*="m-success"], [class*="c-alert"][class*="m-danger"]').first()
    .waitFor({ state: 'visible', timeout: 60_000 });
}

/** A step logger: `name` prefixes the console line, result.steps keeps the step. */
export function stepLog(result, name) {
  return (m) => { result.steps.push(m); console.log(`[${name}] ${m}`); };
}

/**
 * Runs `steps` in the browser session; result.ok says whether it finished. On a failure the
 * stack goes to result.failure and OUT gets failure.png and failure.html. OUT/result.json is
 * always written, the browser closed and its profile removed; the process exits 0 only if ok.
 */
export async function run({ ctx, page, userDataDir }, result, out, steps) {
  try {
    await steps();
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.failure = String(e && e.stack || e);
    console.error(result.failure);
    await page.screenshot({ path: path.join(out, 'failure.png'), fullPage: true }).catch(() => {});
    fs.writeFileSync(path.join(out, 'failure.html'), await page.content().catch(() => ''));
  } finally {
    fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result, null, 2));
    await ctx.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  process.exit(result.ok ? 0 : 1);
}
