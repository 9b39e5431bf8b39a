// Gig'MCP console core: who am I, the /api client (session cookie + X-CSRF-Token on every
// change), the impersonation banner, and small DOM helpers. Nothing here decides what a user
// may do: the role checks below only hide buttons the API would refuse anyway.
'use strict';
(function () {
  const Gig = (window.Gig = {});
  const pages = {};
  let csrf = '';
  const RANK = { viewer: 0, member: 1, operator: 2, admin: 3 };
  // Mirrors crates/api/src/rbac.rs (a hint for hiding controls; /api enforces).
  const LEAST = {
    ViewServers: 'viewer', ViewUsers: 'operator', ManageUsers: 'admin', ViewAudit: 'operator',
    UseProfiles: 'member', Impersonate: 'admin', ManageServers: 'operator', ManageCredentials: 'operator',
    ApproveTools: 'operator',
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }
  Gig.ApiError = ApiError;

  /** Calls /api; resolves to the JSON body (null on 204), rejects with ApiError. */
  Gig.api = async function (method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf;
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'network', 'The gateway could not be reached. Check your connection and reload.');
    }
    if (response.status === 204) return null;
    let data = null;
    if ((response.headers.get('content-type') || '').includes('json')) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(response.status, err.code || 'http_' + response.status,
        err.message || 'The gateway answered ' + response.status + '.');
    }
    return data;
  };

  Gig.can = (permission) => !!Gig.me && RANK[Gig.me.role] >= RANK[LEAST[permission]];
  Gig.page = (id, run) => { pages[id] = run; };

  /** h('p', {class: 'x', onclick: f}, 'text', child...) — text is always text, never HTML. */
  Gig.h = function (tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  };
  const h = Gig.h;
  Gig.$ = (selector, root) => (root || document).querySelector(selector);
  Gig.fill = (el, ...children) => { el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined)); };

  /** A clear message for an API failure, with a sign-in link when the session ended. */
  Gig.failure = function (error, what) {
    const opts = what || {};
    if (error.status === 404 && opts.optional) return h('p', { class: 'unavailable' }, opts.optional);
    if (error.status === 403 && error.code === 'forbidden') {
      return h('p', { class: 'unavailable' }, opts.forbidden || 'Your role does not allow this.');
    }
    if (error.status === 401) {
      return h('p', { class: 'error-text' }, 'Your session ended. ', h('a', { href: '/api/auth/login' }, 'Sign in again'), '.');
    }
    return h('p', { class: 'error-text' }, (opts.label ? opts.label + ': ' : '') + error.message);
  };

  Gig.say = function (text) {
    const el = document.getElementById('announcer');
    el.textContent = '';
    window.setTimeout(() => { el.textContent = text; }, 50);
  };
  Gig.status = function (el, text, kind) {
    el.textContent = text;
    el.classList.remove('error', 'ok');
    if (kind) el.classList.add(kind);
  };

  Gig.when = function (unix) {
    if (unix === null || unix === undefined) return '—';
    return new Date(unix * 1000).toLocaleString();
  };
  Gig.stateBadge = (state) => h('span', { class: 'state state-' + state }, state.replace('_', ' '));
  Gig.userLabel = (u) => u.name || u.email || ('user ' + u.id);

  /** A form whose submit runs `action(form)` and reports in the form's `.status`. */
  Gig.onSubmit = function (form, action) {
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const status = form.querySelector('.status');
      const button = form.querySelector('[type=submit]');
      if (button) button.disabled = true;
      if (status) Gig.status(status, 'Working…');
      try {
        const message = await action(form);
        if (status) Gig.status(status, message || 'Done.', 'ok');
        if (message) Gig.say(message);
      } catch (e) {
        if (status) Gig.status(status, e.message, 'error');
        Gig.say(e.message);
      } finally {
        if (button) button.disabled = false;
      }
    });
  };

  /** Copies `text`; resolves to a message. */
  Gig.copy = async function (text, input) {
    try {
      await navigator.clipboard.writeText(text);
      return 'Copied.';
    } catch (e) {
      if (input) { input.focus(); input.select(); }
      return 'Select the text and copy it (the browser refused clipboard access).';
    }
  };

  function gate(message, showSignIn) {
    document.getElementById('gate-message').textContent = message;
    document.getElementById('gate-action').hidden = !showSignIn;
    document.getElementById('gate').hidden = false;
    document.getElementById('app').hidden = true;
  }

  function showBanner(me) {
    const banner = document.getElementById('impersonation');
    if (!me.impersonating) { banner.hidden = true; return; }
    const real = me.impersonating.real_user;
    document.getElementById('acting-as').textContent = Gig.userLabel(me.user) + ' (' + me.role + ')';
    document.getElementById('acting-actor').textContent = Gig.userLabel(real) + ' as ' + Gig.userLabel(me.user);
    banner.hidden = false;
  }

  async function stopImpersonating() {
    try {
      await Gig.api('DELETE', '/api/impersonation');
      window.location.reload();
    } catch (e) {
      Gig.say('Could not stop: ' + e.message);
    }
  }

  async function signOut() {
    try {
      const out = await Gig.api('POST', '/api/auth/logout');
      if (out && out.end_session_url && /^https?:/.test(out.end_session_url)) {
        window.location.assign(out.end_session_url);
      } else {
        window.location.assign('/');
      }
    } catch (e) {
      Gig.say('Could not sign out: ' + e.message);
    }
  }

  async function boot() {
    document.getElementById('stop-impersonating').addEventListener('click', stopImpersonating);
    document.getElementById('sign-out').addEventListener('click', signOut);
    let me;
    try {
      me = await Gig.api('GET', '/api/me');
    } catch (e) {
      if (e.status === 401) gate('You are not signed in. Sign in with your organisation’s account to use the console.', true);
      else if (e.code === 'control_plane_disabled') gate('The control plane is turned off on this gateway: ' + e.message, false);
      else gate('The console could not reach the gateway: ' + e.message, false);
      return;
    }
    Gig.me = me;
    csrf = me.csrf_token || '';
    showBanner(me);
    document.getElementById('who-name').textContent = Gig.userLabel(me.user) + ' · ' + me.role;
    document.getElementById('sign-out').hidden = false;
    for (const item of document.querySelectorAll('.nav li[data-minimum]')) {
      item.hidden = RANK[me.role] < RANK[item.dataset.minimum];
    }
    document.getElementById('gate').hidden = true;
    document.getElementById('app').hidden = false;
    for (const el of document.querySelectorAll('[data-needs]')) {
      if (!Gig.can(el.dataset.needs)) el.hidden = true;
    }
    const run = pages[document.body.dataset.page];
    if (!run) return;
    try {
      await run(Gig);
    } catch (e) {
      const app = document.getElementById('app');
      app.prepend(h('p', { class: 'notice error' }, 'This page failed to load: ' + e.message));
    }
  }

  document.addEventListener('DOMContentLoaded', boot);
})();
