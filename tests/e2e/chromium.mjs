// chromium.mjs — what the browser-driving test scripts share: playwright-core and axe-core from
// the peers' node_modules (tests/peers/install-peers.sh), and Debian's Chromium launched headless
// with nothing of its own phoning home.
import { createRequire } from 'node:module';

/** playwright-core's `chromium` and axe-core's `AxeBuilder`, from the peers' node_modules. */
export function peers(peersNode) {
  const require = createRequire(peersNode + '/package.json');
  const { chromium } = require('playwright-core');
  const axeModule = require('@axe-core/playwright');
  return { chromium, AxeBuilder: axeModule.AxeBuilder || axeModule.default || axeModule };
}

/** Debian's Chromium, headless, without background networking, sync or updates. */
export function launch(chromium) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}
