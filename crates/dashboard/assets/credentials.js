// Credentials a server declares: set, replace, delete. Values go in and never come back: the
// list shows only names, key ids and when each was set.
'use strict';
(function (Gig) {
  const { h } = Gig;

  /** The credential editor for one server (`info` from GET /api/servers). */
  Gig.credentialEditor = async function (info) {
    const box = h('div', { class: 'creds' });
    if (!info.credentials.length) {
      box.append(h('p', { class: 'muted' }, info.name + ' declares no credentials.'));
      return box;
    }
    // A server with an instance per user takes each user's own value (theirs only, set by
    // them); a shared one takes the server's, set by an operator.
    const own = Boolean(info.instances);
    const collection = (own ? '/api/me/credentials/' : '/api/servers/') + encodeURIComponent(info.name) + (own ? '' : '/credentials');
    if (own) box.append(h('p', { class: 'notice' }, info.name + ' runs an instance per ' + (info.instances.mode === 'per-user' ? 'user' : 'session') + ': the values below are yours, used only by your own instance.'));
    let stored = [];
    try {
      stored = (await Gig.api('GET', collection)).credentials;
    } catch (e) {
      box.append(Gig.failure(e, { label: 'Stored credentials' }));
    }
    const canSet = own ? Gig.can('UseProfiles') : Gig.can('ManageCredentials');
    for (const declared of info.credentials) {
      const set = stored.find((c) => c.name === declared.name);
      const base = 'cred-' + info.name + '-' + declared.name;
      const url = collection + '/' + encodeURIComponent(declared.name);
      const input = h('input', { id: base, type: 'password', autocomplete: 'new-password', spellcheck: 'false', required: true, 'aria-describedby': base + '-help' });
      const form = h('form', { class: 'form', novalidate: true, 'data-credential': declared.name },
        h('div', { class: 'field' },
          h('label', { for: base }, (set ? 'Replace the value of ' : 'Value of ') + declared.name),
          input,
          h('p', { id: base + '-help', class: 'help' }, 'Stored encrypted; it is never shown again, here or anywhere.')),
        h('div', { class: 'actions' },
          h('button', { type: 'submit', class: 'button primary' }, set ? 'Replace' : 'Set'),
          set ? h('button', { type: 'button', class: 'button danger', onclick: remove }, 'Delete') : null),
        h('p', { class: 'status', role: 'status', 'aria-live': 'polite' }));
      async function remove() {
        if (!window.confirm('Delete ' + declared.name + '? ' + info.name + ' loses access until it is set again.')) return;
        try {
          await Gig.api('DELETE', url);
          box.replaceWith(await Gig.credentialEditor(info));
          Gig.say(declared.name + ' deleted');
        } catch (e) {
          Gig.status(form.querySelector('.status'), e.message, 'error');
        }
      }
      Gig.onSubmit(form, async () => {
        if (!input.value) throw new Error('Enter a value first.');
        await Gig.api('PUT', url, { value: input.value });
        input.value = '';
        const fresh = await Gig.credentialEditor(info);
        box.replaceWith(fresh);
        const status = fresh.querySelector('[data-credential="' + declared.name + '"] .status');
        if (status) Gig.status(status, declared.name + ' saved. The server keeps its placeholder; new requests carry the new value.', 'ok');
        return declared.name + ' saved';
      });
      box.append(h('div', { class: 'cred', 'data-credential-row': declared.name },
        h('h3', {}, declared.name),
        h('p', {}, info.name + ' reads ', h('code', {}, declared.env), ', which holds a placeholder. The real value is sent only to: ',
          declared.hosts.length ? declared.hosts.map((host, i) => [i ? ', ' : '', h('code', {}, host)]) : 'no host'),
        h('p', { class: 'cred-state' }, set
          ? ['Set · key ', h('code', {}, set.key_id), ' · updated ' + Gig.when(set.updated_at)]
          : h('strong', {}, 'Not set')),
        canSet ? form : h('p', { class: 'small muted' }, own ? 'Setting your own credentials needs the member role.' : 'Setting credentials needs the operator role.')));
    }
    return box;
  };

  /**
   * The caller's own account at a server that uses OAuth per user, or null for any other
   * server. Connecting leaves for the server's authorization server and comes back here with
   * ?connected=1; the tokens stay in the gateway.
   */
  Gig.connectionPanel = async function (name) {
    let connection;
    try {
      connection = (await Gig.api('GET', '/api/me/connections')).connections.find((c) => c.server === name);
    } catch (e) {
      return Gig.failure(e, { label: 'Your account', forbidden: 'Connecting an account needs the member role.' });
    }
    if (!connection) return null;
    const url = '/api/me/connections/' + encodeURIComponent(name);
    const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
    const words = {
      connected: 'Your account is connected: your calls to ' + name + ' carry your own token, which stays in the gateway.',
      not_connected: 'Connect your account to call ' + name + '\'s tools: you sign in at its authorization server, and your calls then carry your own token.',
      broken: 'Your connection stopped working: ' + (connection.reason || 'connect again') + '.',
    };
    async function connect() {
      try {
        Gig.status(status, 'Going to ' + name + '\'s sign-in…');
        window.location.assign((await Gig.api('POST', url)).authorization_url);
      } catch (e) {
        Gig.status(status, e.message, 'error');
      }
    }
    async function disconnect() {
      if (!window.confirm('Disconnect your account from ' + name + '? Its tokens are revoked; your calls to it fail until you connect again.')) return;
      try {
        await Gig.api('DELETE', url);
        box.replaceWith(await Gig.connectionPanel(name));
        Gig.say('Disconnected from ' + name);
      } catch (e) {
        Gig.status(status, e.message, 'error');
      }
    }
    const connected = connection.state === 'connected';
    const box = h('div', { class: 'connection', id: 'connection', 'data-state': connection.state },
      h('h3', {}, 'Your account'),
      h('p', { class: connection.state === 'broken' ? 'error-text' : '' }, words[connection.state] || connection.state),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button primary', onclick: connect }, connected ? 'Connect again' : 'Connect your account'),
        connected ? h('button', { type: 'button', class: 'button danger', onclick: disconnect }, 'Disconnect') : null),
      status);
    if (connected && new URLSearchParams(window.location.search).get('connected') === '1') {
      Gig.status(status, 'Connected.', 'ok');
    }
    return box;
  };

  Gig.page('credentials', async function () {
    const list = Gig.$('#credentials-list');
    const state = Gig.$('#credentials-state');
    let servers;
    try {
      servers = (await Gig.api('GET', '/api/servers')).servers;
    } catch (e) {
      Gig.fill(list, Gig.failure(e, { label: 'Servers' }));
      return;
    }
    const withCredentials = servers.filter((s) => s.credentials.length);
    if (!withCredentials.length) {
      state.textContent = 'No server declares a credential. A server that needs a key declares it in its index entry or servers-file sandbox block.';
      state.hidden = false;
      return;
    }
    for (const s of withCredentials) {
      const section = h('section', { class: 'block', 'aria-labelledby': 'h-cred-' + s.name },
        h('h2', { id: 'h-cred-' + s.name }, h('a', { href: '/servers/' + encodeURIComponent(s.name) }, s.name)));
      section.append(await Gig.credentialEditor(s));
      list.append(section);
    }
  });
})(window.Gig);
