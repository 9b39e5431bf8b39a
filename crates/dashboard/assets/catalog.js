// Catalog: the signed index's entries; an install is followed live over server-sent events
// (GET /api/installs/{job}/events, each event's data is the job as JSON).
'use strict';
Gig.page('catalog', async function (Gig) {
  const { h, $ } = Gig;
  const list = $('#catalog');
  const state = $('#catalog-state');
  let busy = false;

  function notice(text, error) {
    state.textContent = text;
    state.classList.toggle('error', !!error);
    state.hidden = !text;
  }

  async function load() {
    let catalog;
    try {
      catalog = await Gig.api('GET', '/api/catalog');
    } catch (e) {
      notice('The catalog could not be loaded: ' + e.message, true);
      return;
    }
    if (!catalog.enabled) {
      notice('This gateway has no signed index configured, so there is nothing to install (set GIG_INDEX_URL and GIG_INDEX_PUBKEYS).');
      Gig.fill(list);
      return;
    }
    if (!catalog.entries.length) {
      notice('The signed index lists no servers.');
      Gig.fill(list);
      return;
    }
    notice('');
    const canInstall = Gig.can('ManageServers');
    Gig.fill(list, catalog.entries.map((e) => {
      const id = 'entry-' + e.name;
      const select = h('select', { id: id + '-version', 'aria-label': 'Version of ' + e.name },
        e.versions.map((v) => h('option', { value: v, selected: v === e.latest }, v)));
      const installed = e.installed
        ? h('p', {}, 'Installed: ', h('strong', {}, e.installed), ' · ', h('a', { href: '/servers/' + encodeURIComponent(e.name) }, 'details'))
        : h('p', { class: 'muted' }, 'Not installed');
      const button = h('button', { type: 'button', class: 'button primary', 'data-install': e.name,
        onclick: () => install(e.name + '@' + select.value) },
        (e.installed ? 'Install again ' : 'Install ') + e.name);
      return h('li', { class: 'card', 'aria-labelledby': id },
        h('h2', { id }, e.name),
        h('p', {}, e.description || 'No description.'),
        h('p', { class: 'small muted' }, 'Latest ' + e.latest),
        installed,
        canInstall ? h('div', { class: 'actions' }, h('label', { class: 'visually-hidden', for: id + '-version' }, 'Version'), select, button)
          : h('p', { class: 'small muted' }, 'Installing needs the operator role.'));
    }));
  }

  function follow(started) {
    return new Promise((resolve) => {
      const log = $('#install-log');
      const status = $('#install-status');
      let shown = 0;
      const source = new EventSource(started.events_url);
      function update(job) {
        for (const line of job.progress.slice(shown)) log.append(h('li', {}, line));
        shown = job.progress.length;
        log.scrollTop = log.scrollHeight;
      }
      source.addEventListener('progress', (event) => update(JSON.parse(event.data)));
      source.addEventListener('done', (event) => {
        const job = JSON.parse(event.data);
        update(job);
        source.close();
        Gig.status(status, 'Installed ' + job.server + ' ' + job.version + '. It starts within seconds.', 'ok');
        Gig.say('Install finished');
        resolve(job);
      });
      source.addEventListener('failed', (event) => {
        const job = JSON.parse(event.data);
        update(job);
        source.close();
        Gig.status(status, 'Install failed: ' + (job.error || 'unknown error'), 'error');
        Gig.say('Install failed');
        resolve(job);
      });
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED) {
          Gig.status(status, 'Lost the progress stream; reload to see the result.', 'error');
          resolve(null);
        }
      };
    });
  }

  async function install(ref) {
    if (busy) return;
    busy = true;
    for (const b of document.querySelectorAll('[data-install]')) b.disabled = true;
    const panel = $('#install-panel');
    panel.hidden = false;
    Gig.fill($('#install-log'));
    const status = $('#install-status');
    Gig.status(status, 'Installing ' + ref + '…');
    try {
      const started = await Gig.api('POST', '/api/servers', { ref });
      await follow(started);
    } catch (e) {
      Gig.status(status, 'Install refused: ' + e.message, 'error');
    } finally {
      busy = false;
      await load();
    }
  }

  await load();
});
