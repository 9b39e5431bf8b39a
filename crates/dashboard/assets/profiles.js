// Profiles and tokens: choose tools, rename, delete; make a profile token (shown once, with a
// ready-to-paste configuration for Claude Code, VS Code and Cursor) and revoke it; the OAuth
// clients signed in as you, revocable; API tokens.
'use strict';
Gig.page('profiles', async function (Gig) {
  const { h, $ } = Gig;
  const mcpUrl = window.location.origin + '/mcp';
  const DAY = 86400;

  function configs(profile, token) {
    const key = 'gigmcp-' + profile.name.toLowerCase().replace(/[^a-z0-9-]/g, '-');
    const header = 'Bearer ' + token;
    return [
      ['Claude Code (terminal)', 'claude mcp add --transport http ' + key + ' ' + mcpUrl + ' --header "Authorization: ' + header + '"'],
      ['VS Code (.vscode/mcp.json)', JSON.stringify({ servers: { [key]: { type: 'http', url: mcpUrl, headers: { Authorization: header } } } }, null, 2)],
      ['Cursor (~/.cursor/mcp.json)', JSON.stringify({ mcpServers: { [key]: { url: mcpUrl, headers: { Authorization: header } } } }, null, 2)],
    ];
  }

  /** The one-time display of a new token's value. */
  function secretOnce(label, token, extra) {
    const id = 'secret-' + Math.random().toString(36).slice(2);
    const input = h('input', { id, readonly: true, value: token, spellcheck: 'false', 'data-secret': 'token' });
    const status = h('span', { class: 'status', role: 'status', 'aria-live': 'polite' });
    const copy = h('button', { type: 'button', class: 'button', onclick: async () => { status.textContent = await Gig.copy(token, input); } }, 'Copy token');
    return h('div', { class: 'secret-once', role: 'group', 'aria-label': label },
      h('p', {}, h('strong', {}, label + ': copy it now.'), ' It is shown only this once; the gateway keeps only its hash.'),
      h('div', { class: 'copy-row' }, h('div', { class: 'field' }, h('label', { for: id }, 'Token'), input), copy), status,
      extra || null);
  }

  async function choices() {
    const box = $('#tool-choices');
    try {
      const servers = (await Gig.api('GET', '/api/servers')).servers;
      if (!servers.length) { Gig.fill(box, h('p', { class: 'muted' }, 'No servers yet: add single tools by name below.')); return; }
      Gig.fill(box, servers.map((s) => {
        const id = 'tool-' + s.name;
        return h('div', { class: 'choice' }, h('input', { type: 'checkbox', id, value: s.name + '/*', name: 'servers' }),
          h('label', { for: id }, 'All tools of ' + s.name + (s.tools !== null ? ' (' + s.tools + ')' : '')));
      }));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { label: 'Servers' }));
    }
  }

  async function tokensOf(profile, box) {
    try {
      const tokens = (await Gig.api('GET', '/api/profiles/' + profile.id + '/tokens')).tokens;
      if (!tokens.length) { Gig.fill(box, h('p', { class: 'muted' }, 'No tokens yet.')); return; }
      Gig.fill(box, h('ul', { class: 'plain' }, tokens.map((t) => h('li', {},
        h('strong', {}, t.name), ' · ', t.active ? 'active' : 'inactive',
        ' · expires ' + Gig.when(t.expires_at), ' · last used ' + Gig.when(t.last_used_at), ' ',
        t.active ? h('button', { type: 'button', class: 'button link', onclick: async () => {
          if (!window.confirm('Revoke ' + t.name + '? Clients using it stop within a second.')) return;
          try { await Gig.api('DELETE', '/api/profiles/' + profile.id + '/tokens/' + encodeURIComponent(t.id)); Gig.say('Token revoked'); }
          catch (e) { Gig.say('Revoke failed: ' + e.message); }
          await tokensOf(profile, box);
        } }, 'Revoke ' + t.name) : null))));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { label: 'Tokens' }));
    }
  }

  function profileView(p) {
    const base = 'profile-' + p.id;
    const tokenList = h('div', {});
    const secret = h('div', {});
    const rename = h('form', { class: 'form inline', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: base + '-name' }, 'Name'),
        h('input', { id: base + '-name', value: p.name, required: true, maxlength: 64, autocomplete: 'off' })),
      h('button', { type: 'submit', class: 'button' }, 'Rename'),
      h('p', { class: 'status', role: 'status', 'aria-live': 'polite' }));
    Gig.onSubmit(rename, async (form) => {
      const name = form.querySelector('input').value.trim();
      const updated = await Gig.api('PUT', '/api/profiles/' + p.id, { name, tools: p.tools, overrides: p.overrides, unprefixed: p.unprefixed });
      p.name = updated.name;
      heading.textContent = updated.name;
      return 'Renamed to ' + updated.name + '.';
    });
    const newToken = h('form', { class: 'form inline', novalidate: true, 'data-new-token': p.name },
      h('div', { class: 'field' }, h('label', { for: base + '-token' }, 'Token name'),
        h('input', { id: base + '-token', required: true, maxlength: 64, autocomplete: 'off', value: 'laptop' })),
      h('div', { class: 'field' }, h('label', { for: base + '-days' }, 'Expires in (days)'),
        h('input', { id: base + '-days', type: 'number', min: 1, max: 365, value: 90 })),
      h('button', { type: 'submit', class: 'button primary' }, 'Create token'),
      h('p', { class: 'status', role: 'status', 'aria-live': 'polite' }));
    Gig.onSubmit(newToken, async (form) => {
      const name = form.querySelector('#' + base + '-token').value.trim();
      const days = Number(form.querySelector('#' + base + '-days').value) || 90;
      const created = await Gig.api('POST', '/api/profiles/' + p.id + '/tokens', { name, expires_in: days * DAY });
      const configList = configs(p, created.token).map(([label, text]) => h('details', { class: 'config-for' },
        h('summary', {}, label), h('pre', { class: 'config', tabindex: 0, 'data-config': label }, text)));
      Gig.fill(secret, secretOnce('New token for ' + p.name, created.token,
        h('div', {}, h('p', {}, 'Client configuration (the token is filled in):'), configList)));
      await tokensOf(p, tokenList);
      return 'Token ' + created.name + ' created.';
    });
    const remove = h('button', { type: 'button', class: 'button danger', onclick: async () => {
      if (!window.confirm('Delete profile ' + p.name + ' and all its tokens?')) return;
      try { await Gig.api('DELETE', '/api/profiles/' + p.id); Gig.say('Profile deleted'); await list(); }
      catch (e) { Gig.say('Delete failed: ' + e.message); }
    } }, 'Delete profile');
    const heading = h('h3', { id: base + '-h' }, p.name);
    const view = h('article', { class: 'profile', 'aria-labelledby': base + '-h', 'data-profile': p.name },
      heading,
      h('p', {}, 'Tools: ', p.tools.length ? p.tools.map((t, i) => [i ? ', ' : '', h('code', {}, t)]) : h('em', {}, 'none'),
        p.unprefixed ? ' · server’s own names' : ''),
      rename,
      h('h4', {}, 'Tokens'), tokenList, newToken, secret,
      h('div', { class: 'actions' }, remove));
    tokensOf(p, tokenList);
    return view;
  }

  async function list() {
    const box = $('#profiles');
    try {
      const profiles = (await Gig.api('GET', '/api/profiles')).profiles;
      Gig.fill(box, profiles.length ? profiles.map(profileView) : h('p', { class: 'muted' }, 'No profiles yet. Create one above, then a token for your MCP client.'));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { forbidden: 'Profiles need the member role.' }));
    }
  }

  Gig.onSubmit($('#new-profile'), async (form) => {
    const name = $('#profile-name').value.trim();
    const tools = [...form.querySelectorAll('input[name=servers]:checked')].map((c) => c.value)
      .concat($('#profile-extra').value.split(',').map((t) => t.trim()).filter(Boolean));
    const created = await Gig.api('POST', '/api/profiles', { name, tools, unprefixed: $('#profile-unprefixed').checked });
    form.reset();
    await list();
    return 'Profile ' + created.name + ' created. Make a token for it below.';
  });

  async function apiTokens() {
    const box = $('#api-tokens');
    try {
      const tokens = (await Gig.api('GET', '/api/tokens')).tokens;
      Gig.fill(box, tokens.length ? h('ul', { class: 'plain' }, tokens.map((t) => h('li', {},
        h('strong', {}, t.name), ' · ' + (t.role || '') + ' · ', t.active ? 'active' : 'inactive', ' · expires ' + Gig.when(t.expires_at), ' ',
        t.active ? h('button', { type: 'button', class: 'button link', onclick: async () => {
          if (!window.confirm('Revoke API token ' + t.name + '?')) return;
          try { await Gig.api('DELETE', '/api/tokens/' + encodeURIComponent(t.id)); Gig.say('API token revoked'); }
          catch (e) { Gig.say('Revoke failed: ' + e.message); }
          await apiTokens();
        } }, 'Revoke ' + t.name) : null))) : h('p', { class: 'muted' }, 'No API tokens.'));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { label: 'API tokens' }));
    }
  }
  /** A client as its consent page named it, with where it comes from when its id is a URL. */
  function clientLabel(g) {
    let from = '';
    try {
      const url = new URL(g.client_id);
      if (url.protocol === 'https:') from = ' (' + url.host + ')';
    } catch (e) { from = ''; }
    return g.client_name + from;
  }

  async function oauthGrants() {
    const box = $('#oauth-grants');
    try {
      const grants = (await Gig.api('GET', '/api/oauth/grants')).grants;
      Gig.fill(box, grants.length ? h('ul', { class: 'plain' }, grants.map((g) => h('li', { 'data-grant': String(g.id) },
        h('strong', {}, clientLabel(g)), ' · profile #' + g.profile_id + ' · ' + g.scope + ' · since ' + Gig.when(g.created_at),
        ' · last used ' + (g.last_used_at ? Gig.when(g.last_used_at) : 'never') + ' ',
        h('button', { type: 'button', class: 'button link', onclick: async () => {
          if (!window.confirm('Revoke ' + clientLabel(g) + '?')) return;
          try { await Gig.api('DELETE', '/api/oauth/grants/' + g.id); Gig.say('Client revoked'); }
          catch (e) { Gig.say('Revoke failed: ' + e.message); }
          await oauthGrants();
        } }, 'Revoke ' + clientLabel(g))))) : h('p', { class: 'muted' }, 'No client has signed in as you.'));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { label: 'Clients' }));
    }
  }

  const roleSelect = $('#api-token-role');
  const RANK = ['viewer', 'member', 'operator', 'admin'];
  for (const option of roleSelect.options) option.disabled = RANK.indexOf(option.value) > RANK.indexOf(Gig.me.role);
  roleSelect.value = Gig.me.role;
  Gig.onSubmit($('#new-api-token'), async () => {
    const days = Number($('#api-token-days').value) || 30;
    const created = await Gig.api('POST', '/api/tokens', { name: $('#api-token-name').value.trim(), role: roleSelect.value, expires_in: days * DAY });
    Gig.fill($('#api-token-secret'), secretOnce('New API token ' + created.name, created.token,
      h('p', { class: 'small' }, 'Use it as ', h('code', {}, 'Authorization: Bearer …'), ' on /api.')));
    await apiTokens();
    return 'API token ' + created.name + ' created.';
  });

  if (!Gig.can('UseProfiles')) {
    $('#new-profile').hidden = true;
  }
  await Promise.all([choices(), list(), oauthGrants(), apiTokens()]);
});
