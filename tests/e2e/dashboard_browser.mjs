// dashboard_browser.mjs CONFIG_JSON — drives the console in Debian's Chromium (headless) with
// playwright-core, for tests/e2e/test_dashboard.py. Prints ONE JSON line of findings on stdout;
// the Python test makes the assertions. Progress goes to stderr.
//
// CONFIG: {base, issuer, peers_node, shots, login, impersonate, secret}
import { launch, peers } from './chromium.mjs';
import { mkdirSync } from 'node:fs';

const cfg = JSON.parse(process.argv[2]);
const { chromium, AxeBuilder } = peers(cfg.peers_node);

const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const PAGES = [
  ['overview', '/'], ['catalog', '/catalog'], ['servers', '/servers'], ['server-fetch', '/servers/fetch'],
  ['credentials', '/credentials'], ['profiles', '/profiles'], ['users', '/users'], ['audit', '/audit'],
];

const out = {
  csp: [], third_party: [], page_errors: [], console_errors: [], axe: [], screenshots: [],
  steps: [], banner: {}, install: {}, credential: {}, token: null, configs: [], audit: {}, keyboard: {}, oauth_grants: null,
  layout_shift: null, live: false, csp_control: null, signed_out: {}, fatal: null, idp_third_party: [],
};
const log = (m) => { process.stderr.write('[browser] ' + m + '\n'); };
const step = (m) => { out.steps.push(m); log(m); };
mkdirSync(cfg.shots, { recursive: true });

const browser = await launch(chromium);
try {
  const context = await browser.newContext({ viewport: LAPTOP });
  await context.exposeBinding('__gigCsp', (_source, v) => { out.csp.push(v); });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__gigCsp({ doc: e.documentURI, blocked: e.blockedURI, directive: e.violatedDirective, sample: e.sample || '' });
    });
    window.__gigShift = 0;
    try {
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__gigShift += entry.value;
      }).observe({ type: 'layout-shift', buffered: true });
    } catch (e) { /* not supported */ }
  });
  const allowed = new Set([new URL(cfg.base).origin, new URL(cfg.issuer).origin]);
  context.on('request', (r) => {
    const url = r.url();
    if (url.startsWith('data:')) return;
    if (allowed.has(new URL(url).origin)) return;
    // The provider's own login page loads web fonts from elsewhere: that is the provider's
    // page, not ours. Anything else is ours and must not happen.
    let from = '';
    try { from = r.frame().url(); } catch (e) { from = ''; }
    if (from.startsWith(cfg.issuer)) out.idp_third_party.push(url);
    else out.third_party.push({ url, from });
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => out.page_errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && page.url().startsWith(cfg.base)) out.console_errors.push(page.url() + ': ' + m.text());
  });
  page.on('dialog', (d) => d.accept());

  const ours = () => page.url().startsWith(cfg.base);
  async function axe(name) {
    await page.waitForLoadState('networkidle').catch(() => {});
    const result = await new AxeBuilder({ page }).analyze();
    for (const v of result.violations) {
      out.axe.push({ page: name, id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) });
    }
    out.axe.push({ page: name, checked: true, passes: result.passes.length, violations: result.violations.length });
  }
  async function shoot(name) {
    for (const [label, size] of [['laptop', LAPTOP], ['phone', PHONE]]) {
      await page.setViewportSize(size);
      await page.waitForTimeout(150);
      const file = `${cfg.shots}/${name}-${label}.png`;
      await page.screenshot({ path: file, fullPage: true });
      out.screenshots.push(file);
    }
    await page.setViewportSize(LAPTOP);
  }
  async function open(path) {
    await page.goto(cfg.base + path);
    await page.waitForSelector('#app:not([hidden]), #gate-action:not([hidden])');
  }

  // ---- a gateway without the control plane: the page says so (and offers no sign-in)
  if (cfg.mode === 'disabled') {
    await page.goto(cfg.base + '/');
    await page.waitForFunction(() => document.querySelector('#gate-message').textContent !== 'Loading…');
    out.disabled = {
      message: await page.textContent('#gate-message'),
      sign_in_visible: await page.isVisible('#gate-action'),
    };
    await axe('control-plane-off');
    throw Object.assign(new Error('done'), { done: true });
  }

  // ---- signed out: a Sign in button, and keyboard access starts at the skip link
  await open('/');
  out.signed_out.sign_in_visible = await page.isVisible('#gate-action a[href="/api/auth/login"]');
  await page.keyboard.press('Tab');
  out.keyboard.first_tab = await page.evaluate(() => document.activeElement && document.activeElement.textContent.trim());
  await page.keyboard.press('Enter');
  out.keyboard.after_skip = await page.evaluate(() => document.activeElement && document.activeElement.id);
  await axe('signed-out');
  await shoot('signed-out');
  step('signed-out page checked');

  // ---- sign in through the real provider's login and consent forms
  await page.click('#gate-action a');
  await page.waitForSelector('input[name=login]');
  await page.fill('input[name=login]', cfg.login);
  await page.fill('input[name=password]', 'any-password');
  await page.click('button[type=submit]');
  for (let i = 0; i < 5 && !ours(); i++) {
    await page.waitForLoadState();
    if (ours()) break;
    const consent = await page.$('button[type=submit]');
    if (consent) await Promise.all([page.waitForNavigation().catch(() => {}), consent.click()]);
  }
  await page.waitForURL(cfg.base + '/');
  await page.waitForSelector('#app:not([hidden])');
  out.signed_in_as = await page.textContent('#who-name');
  step('signed in as ' + out.signed_in_as);

  // ---- install from the catalog and watch progress arrive
  await open('/catalog');
  for (const server of ['echo', 'fetch']) {
    await page.click(`[data-install="${server}"]`);
    const seen = [];
    await page.waitForSelector('#install-log li');
    const deadline = Date.now() + 120000;
    while (Date.now() < deadline) {
      seen.push(await page.locator('#install-log li').count());
      const text = (await page.textContent('#install-status')) || '';
      if (/Installed|failed|refused/.test(text)) break;
      await page.waitForTimeout(50);
    }
    out.install[server] = {
      status: await page.textContent('#install-status'),
      lines: await page.locator('#install-log li').allTextContents(),
      counts_seen: [...new Set(seen)],
    };
    await page.waitForSelector(`[data-install="${server}"]:not([disabled])`);
    step(`installed ${server}: ${out.install[server].status}`);
  }

  // ---- set a credential on the server's page; the value never comes back
  await open('/servers/fetch');
  await page.waitForSelector('#cred-fetch-api-key');
  await page.fill('#cred-fetch-api-key', cfg.secret);
  await page.click('[data-credential="api-key"] button[type=submit]');
  await page.waitForSelector('[data-credential-row="api-key"] .cred-state code');
  out.credential.state = await page.textContent('[data-credential-row="api-key"] .cred-state');
  out.credential.status = await page.textContent('[data-credential="api-key"] .status');
  out.credential.input_after = await page.inputValue('#cred-fetch-api-key');
  out.credential.secret_in_page = (await page.content()).includes(cfg.secret);
  await open('/credentials');
  await page.waitForSelector('[data-credential-row="api-key"] .cred-state code');
  out.credential.secret_in_credentials_page = (await page.content()).includes(cfg.secret);
  step('credential set: ' + out.credential.state);

  // ---- a profile and a token, copied once, with client configurations
  await open('/profiles');
  await page.waitForSelector('#tool-echo');
  await page.fill('#profile-name', 'laptop');
  await page.check('#tool-echo');
  await page.click('#new-profile button[type=submit]');
  const profile = page.locator('article[data-profile="laptop"]');
  await profile.waitFor();
  await profile.locator('form[data-new-token] button[type=submit]').click();
  await profile.locator('input[data-secret]').waitFor();
  out.token = await profile.locator('input[data-secret]').inputValue();
  out.configs = await profile.locator('pre[data-config]').evaluateAll((els) => els.map((e) => ({ label: e.dataset.config, text: e.textContent })));
  await profile.locator('details.config-for').first().locator('summary').click();
  step('profile token created');
  await page.waitForFunction(() => !document.querySelector('#oauth-grants').textContent.includes('Loading'));
  out.oauth_grants = await page.textContent('#oauth-grants');

  // ---- every page: axe and screenshots at phone and laptop widths
  for (const [name, path] of PAGES) {
    await open(path);
    await page.waitForLoadState('networkidle').catch(() => {});
    await axe(name);
    await page.setViewportSize(PHONE);
    await axe(name + '@phone');
    await page.setViewportSize(LAPTOP);
    await shoot(name);
  }
  step('axe and screenshots done');

  // ---- live updates (server-sent events) arrive and do not move the page
  await open('/');
  await page.waitForSelector('#servers-body tr[data-server]');
  await page.waitForSelector('#servers-table[data-live=on]');
  out.live = true;
  await page.waitForTimeout(1000);
  await page.evaluate(() => { window.__gigShift = 0; });
  await page.waitForTimeout(11000);
  out.layout_shift = await page.evaluate(() => window.__gigShift);

  // ---- the audit log, filtered, with its export link
  await open('/audit');
  await page.fill('#f-kind', 'credential');
  await page.click('#audit-filters button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#audit-body').textContent.includes('credential.set'));
  out.audit.rows = await page.locator('#audit-body tr').count();
  out.audit.export_href = await page.getAttribute('#export', 'href');

  // ---- impersonate: the banner on every page, then back
  await open('/users');
  await page.click(`[data-impersonate="${cfg.impersonate}"]`);
  await page.waitForURL(cfg.base + '/');
  for (const [name, path] of PAGES) {
    await open(path);
    const visible = await page.isVisible('#impersonation');
    out.banner[name] = visible ? (await page.textContent('#impersonation')).replace(/\s+/g, ' ').trim() : null;
  }
  await open('/');
  await axe('overview-impersonating');
  await shoot('impersonating');
  // The page reloads once the gateway has answered: wait for that navigation, not for the
  // load state of the page still showing.
  await Promise.all([page.waitForNavigation(), page.click('#stop-impersonating')]);
  await page.waitForSelector('#app:not([hidden])');
  out.banner_after_stop = await page.isVisible('#impersonation');
  step('impersonation checked');

  // ---- control: the listener does hear a violation when one happens
  const before = out.csp.length;
  await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__injected = true';
    document.body.append(s);
  });
  await page.waitForTimeout(300);
  out.csp_control = {
    heard: out.csp.slice(before),
    ran: await page.evaluate(() => window.__injected === true),
  };
  out.csp = out.csp.slice(0, before);
} catch (e) {
  if (!e.done) out.fatal = String(e && e.stack || e);
  log('FAILED: ' + out.fatal);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
