// connect_browser.mjs CONFIG_JSON — connects a signed-in user's account to a remote server
// from the dashboard, in Debian's Chromium (headless) with playwright-core, for
// tests/e2e/test_upstream_oauth.py. Prints ONE JSON line of findings; the test asserts.
//
// CONFIG: {base, peers_node, session, server, issuer, login}
//   session: the gig_session cookie's value (the user signed in already)
//   issuer:  the server's authorization server (its TLS is the test CA's, which this browser
//            does not know: certificate errors are ignored for this run only)
import { launch, peers } from './chromium.mjs';

const cfg = JSON.parse(process.argv[2]);
const { chromium, AxeBuilder } = peers(cfg.peers_node);

const out = { before: null, after: null, status: null, left_for: null, axe: [], page_errors: [], fatal: null };
const browser = await launch(chromium);
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addCookies([{ name: 'gig_session', value: cfg.session, url: cfg.base }]);
  const page = await context.newPage();
  page.on('pageerror', (e) => out.page_errors.push(String(e)));
  const serverPage = cfg.base + '/servers/' + encodeURIComponent(cfg.server);
  await page.goto(serverPage);
  await page.waitForSelector('#connection');
  out.before = await page.getAttribute('#connection', 'data-state');
  const result = await new AxeBuilder({ page }).include('#connection').analyze();
  out.axe = result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help }));

  await Promise.all([page.waitForURL((u) => u.toString().startsWith(cfg.issuer)), page.click('#connection button.primary')]);
  out.left_for = new URL(page.url()).origin;
  await page.waitForSelector('input[name=login]');
  await page.fill('input[name=login]', cfg.login);
  await page.fill('input[name=password]', 'any-password');
  await page.click('button[type=submit]');
  const home = () => page.url().startsWith(cfg.base);
  for (let i = 0; i < 5 && !home(); i++) {
    await page.waitForLoadState();
    if (home()) break;
    const consent = await page.$('button[type=submit]');
    if (consent) await Promise.all([page.waitForNavigation().catch(() => {}), consent.click()]);
  }
  await page.waitForURL(serverPage + '?connected=1');
  await page.waitForSelector('#connection[data-state=connected]');
  out.after = await page.getAttribute('#connection', 'data-state');
  out.status = await page.textContent('#connection .status');
} catch (e) {
  out.fatal = String(e && e.stack || e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
