// Server detail: summary, restart and uninstall, tools and tool-definition changes (with a
// diff to approve), egress allowlist, credentials, calls in the last hour, recent logs.
'use strict';
Gig.page('server', async function (Gig) {
  const { h, $ } = Gig;
  const name = decodeURIComponent(window.location.pathname.split('/')[2] || '');
  const path = '/api/servers/' + encodeURIComponent(name);
  document.title = name + ' · Gig\'MCP';
  $('#page-title').textContent = 'Server ' + name;
  const state = $('#server-state');

  let info;
  try {
    info = (await Gig.api('GET', '/api/servers')).servers.find((s) => s.name === name);
  } catch (e) {
    Gig.fill(state, Gig.failure(e, { label: 'Servers' }));
    state.hidden = false;
    return;
  }
  if (!info) {
    Gig.fill(state, 'There is no server named ', h('code', {}, name), '. ', h('a', { href: '/servers' }, 'See all servers'), '.');
    state.hidden = false;
    return;
  }
  $('#server').hidden = false;

  function summary(s) {
    const facts = [
      ['State', [Gig.stateBadge(s.state), s.reason ? ' ' + s.reason : '']],
      ['Source', s.source === 'installed' ? 'installed from the signed index' : 'declared in the servers file'],
      ['Version', s.version || '—'],
      ['Image', s.image_digest ? h('code', {}, s.image_digest) : '—'],
      ['Tools', s.tools === null ? '—' : String(s.tools)],
      ['Restarts', s.restarts === null ? '—' : String(s.restarts)],
    ];
    Gig.fill($('#summary'), facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]).flat());
  }
  summary(info);

  const actionStatus = $('#action-status');
  const uninstall = $('#uninstall');
  if (info.source !== 'installed') uninstall.hidden = true;
  uninstall.addEventListener('click', async () => {
    if (!window.confirm('Uninstall ' + name + '? Running gateways stop it within seconds; its credentials stay in the vault.')) return;
    try {
      await Gig.api('DELETE', path);
      Gig.status(actionStatus, name + ' uninstalled.', 'ok');
      window.location.assign('/servers');
    } catch (e) {
      Gig.status(actionStatus, 'Uninstall failed: ' + e.message, 'error');
    }
  });
  $('#restart').addEventListener('click', async () => {
    Gig.status(actionStatus, 'Restarting…');
    try {
      await Gig.api('POST', path + '/restart');
      Gig.status(actionStatus, 'Restart requested.', 'ok');
    } catch (e) {
      const missing = e.status === 404 && /API route/.test(e.message);
      Gig.status(actionStatus, missing ? 'Restart is not available from this gateway’s /api yet.' : 'Restart failed: ' + e.message, 'error');
    }
  });

  async function tools() {
    const box = $('#tools');
    try {
      const list = (await Gig.api('GET', path + '/tools')).tools || [];
      if (!list.length) {
        Gig.fill(box, h('p', { class: 'muted' }, 'No tools listed (a changed tool stays hidden until approved, below).'));
        return;
      }
      Gig.fill(box, list.map((t) => h('details', { class: 'tool' },
        h('summary', {}, h('code', {}, t.exposed), t.exposed === info.name + '_' + t.name ? '' : ' (the server calls it ' + t.name + ')'),
        h('p', {}, t.description || 'No description.'),
        h('pre', {}, JSON.stringify(t.input_schema, null, 2)))));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { optional: 'The tool list is not known while the server is not running here.' }));
    }
  }

  const hosts = [];
  for (const c of info.credentials) for (const host of c.hosts) hosts.push([c.name, host]);
  Gig.fill($('#egress'),
    h('h3', {}, 'Allowlist'),
    info.egress.length
      ? h('ul', { class: 'plain' }, info.egress.map((e) => h('li', {}, h('code', {}, e))))
      : h('p', { class: 'muted' }, 'No outbound hosts: every connection the server tries is refused and recorded.'),
    h('h3', {}, 'Where each credential may go'),
    hosts.length
      ? h('ul', { class: 'plain' }, hosts.map(([c, host]) => h('li', {}, h('code', {}, c), ' → ', h('code', {}, host))))
      : h('p', { class: 'muted' }, 'No credentials declared.'),
    h('h3', {}, 'Instance policy'),
    h('p', {}, info.source === 'installed'
      ? 'Runs in its own sandbox (namespaces, seccomp, cgroup limits); its only way out is the egress proxy, which enforces the allowlist above.'
      : 'Declared in the servers file: sandboxed only when its entry has a "sandbox" block (see docs/configuration.md).'),
    instancePolicy(info.instances));

  // One shared instance, or one per user/session with each user's own credentials and limits.
  function instancePolicy(i) {
    if (!i) return h('p', { id: 'instances' }, 'One shared instance for every caller, with the server\'s own credentials.');
    const per = i.mode === 'per-user' ? 'user' : 'MCP session';
    return h('dl', { class: 'facts', id: 'instances' },
      h('dt', {}, 'Instances'), h('dd', {}, 'One per ' + per + ', each with its user\'s own credentials'),
      h('dt', {}, 'Running'), h('dd', {}, i.running + ' of at most ' + i.max_instances),
      h('dt', {}, 'Per user'), h('dd', {}, 'at most ' + i.max_per_user),
      h('dt', {}, 'Stopped after'), h('dd', {}, i.idle_seconds + ' s without a call'));
  }

  const account = await Gig.connectionPanel(info.name);
  if (account) $('#credentials').append(account);
  $('#credentials').append(await Gig.credentialEditor(info));

  async function activity() {
    const box = $('#activity');
    try {
      const st = (await Gig.callStats(name))[name] || Gig.emptyStats();
      Gig.fill(box, h('p', {}, st.total + ' calls, ' + st.failed + ' errors.'), Gig.chart(st, name),
        h('p', { class: 'chart-legend' }, h('span', { class: 'swatch-calls' }, 'calls'), h('span', { class: 'swatch-errors' }, 'errors'), h('span', {}, 'five-minute steps, oldest first')));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { forbidden: 'Calls come from the audit log, which your role cannot see.' }));
    }
  }

  async function logs() {
    const box = $('#logs');
    try {
      const lines = (await Gig.api('GET', path + '/logs')).lines || [];
      Gig.fill(box, lines.length
        ? h('ol', { class: 'log', 'aria-label': 'Log lines, oldest first', tabindex: 0 }, lines.map((l) => h('li', {}, l)))
        : h('p', { class: 'muted' }, 'No log lines yet.'));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { optional: 'Server logs are not available from this gateway’s /api yet.' }));
    }
  }

  async function approvals() {
    const box = $('#approvals');
    try {
      const pending = ((await Gig.api('GET', '/api/approvals')).pending || []).filter((p) => p.server === name);
      if (!pending.length) {
        Gig.fill(box, h('p', { class: 'muted' }, 'No changed tool definitions waiting.'));
        return;
      }
      Gig.fill(box, pending.map((p) => {
        const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
        const approve = h('button', { type: 'button', class: 'button primary', onclick: async () => {
          try {
            // Exactly the definition shown: a later change is never covered.
            await Gig.api('POST', '/api/approvals/' + encodeURIComponent(p.server) + '/' + encodeURIComponent(p.tool),
              { sha256: p.proposed_sha256 });
            Gig.status(status, 'Approved: clients see the new definition.', 'ok');
            approve.disabled = true;
          } catch (e) {
            Gig.status(status, 'Approval failed: ' + e.message, 'error');
          }
        } }, 'Approve the new definition of ' + p.tool);
        const parsed = (text) => { try { return JSON.parse(text || 'null'); } catch (_) { return text; } };
        return h('div', { class: 'approval' }, h('h3', {}, p.tool), diff(parsed(p.current), parsed(p.proposed)),
          Gig.can('ApproveTools') ? approve : h('p', { class: 'small muted' }, 'Approving needs the operator role.'), status);
      }));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { optional: 'Tool approvals are not available from this gateway’s /api yet (use gigmcp tools approve).' }));
    }
  }

  /** A line diff (longest common subsequence) of two JSON values. */
  function diff(before, after) {
    const a = JSON.stringify(before, null, 2).split('\n');
    const b = JSON.stringify(after, null, 2).split('\n');
    const n = a.length, m = b.length;
    const lcs = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
    const out = [];
    let i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a[i] === b[j]) { out.push(h('span', { class: 'same' }, '  ' + a[i])); i++; j++; }
      else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { out.push(h('ins', { class: 'add' }, '+ ' + b[j])); j++; }
      else { out.push(h('del', { class: 'del' }, '- ' + a[i])); i++; }
    }
    return h('pre', { class: 'diff', 'aria-label': 'Changes: lines starting with + are new, with - removed', tabindex: 0 }, out);
  }

  await Promise.all([tools(), activity(), logs(), approvals()]);
});
