// oauth_browser.mjs CONFIG_JSON — a real browser (Debian's Chromium, headless, playwright-core)
// through the gateway's OAuth authorization: the identity provider's login, then the gateway's
// consent page, where it picks a profile and clicks Allow. Proves the form works as browsers
// send it (Origin and all), and runs axe-core on the consent page. Prints ONE JSON line.
//
// CONFIG: {peers_node, authorize_url, base, login, profile, redirect}
import { launch, peers } from './chromium.mjs';

const cfg = JSON.parse(process.argv[2]);
const { chromium, AxeBuilder } = peers(cfg.peers_node);

const out = { landed: null, consent_title: null, axe: [], csp: [], fatal: null, steps: [] };
const step = (m) => { out.steps.push(m); process.stderr.write('[browser] ' + m + '\n'); };
const browser = await launch(chromium);
try {
  const context = await browser.newContext();
  await context.exposeBinding('__gigCsp', (_s, v) => { out.csp.push(v); });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__gigCsp({ doc: e.documentURI, blocked: e.blockedURI, directive: e.violatedDirective });
    });
  });
  // The client's redirect URI: answered here, never reaching the network.
  let landed;
  const arrived = new Promise((resolve) => { landed = resolve; });
  await context.route(cfg.redirect + '**', async (route) => {
    landed(route.request().url());
    await route.fulfill({ status: 200, contentType: 'text/plain', body: 'client callback' });
  });
  const page = await context.newPage();
  await page.goto(cfg.authorize_url);
  step('at ' + new URL(page.url()).origin);
  await page.waitForSelector('input[name=login]');
  await page.fill('input[name=login]', cfg.login);
  await page.fill('input[name=password]', 'any-password');
  await page.click('button[type=submit]');
  const atConsent = () => page.url().startsWith(cfg.base + '/oauth/authorize');
  for (let i = 0; i < 5 && !atConsent(); i++) {
    await page.waitForLoadState();
    if (atConsent()) break;
    const idpConsent = await page.$('button[type=submit]');
    if (idpConsent) await Promise.all([page.waitForNavigation().catch(() => {}), idpConsent.click()]);
  }
  await page.waitForSelector('form[action="/oauth/authorize"]');
  out.consent_title = await page.title();
  step('consent page: ' + out.consent_title);
  const axe = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  out.axe = axe.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  await page.getByLabel(cfg.profile).check();
  await page.click('button[value=allow]');
  out.landed = await Promise.race([arrived, new Promise((r) => setTimeout(() => r(null), 20000))]);
  step('landed: ' + out.landed);
} catch (e) {
  out.fatal = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
