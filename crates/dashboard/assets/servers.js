// Servers: installed and declared servers with their live state (refreshed every 5 s).
'use strict';
Gig.page('servers', async function (Gig) {
  const { h, $ } = Gig;
  async function load() {
    const body = $('#servers-body');
    try {
      const servers = (await Gig.api('GET', '/api/servers')).servers;
      if (!servers.length) {
        Gig.fill(body, h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No servers yet.')));
        return;
      }
      Gig.fill(body, servers.map((s) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: '/servers/' + encodeURIComponent(s.name) }, s.name)),
        h('td', {}, s.source),
        h('td', {}, s.version || '—'),
        h('td', {}, Gig.stateBadge(s.state), s.reason ? h('span', { class: 'small muted' }, ' ' + s.reason) : null),
        h('td', { class: 'num' }, s.tools === null ? '—' : String(s.tools)),
        h('td', { class: 'num' }, s.restarts === null ? '—' : String(s.restarts)))));
    } catch (e) {
      Gig.fill(body, h('tr', {}, h('td', { colspan: 6 }, Gig.failure(e, { label: 'Servers' }))));
    }
  }
  await load();
  window.setInterval(() => { if (!document.hidden) load(); }, 5000);
});
