// Users and roles: change a role (admins), act as a user (admins; the banner then shows on
// every page until "Stop acting as them").
'use strict';
Gig.page('users', async function (Gig) {
  const { h, $ } = Gig;
  const status = $('#users-status');
  const ROLES = ['viewer', 'member', 'operator', 'admin'];

  async function load() {
    const body = $('#users-body');
    let users;
    try {
      users = (await Gig.api('GET', '/api/users')).users;
    } catch (e) {
      Gig.fill(body, h('tr', {}, h('td', { colspan: 4 }, Gig.failure(e, { forbidden: 'Listing users needs the operator role.' }))));
      return;
    }
    const admin = Gig.can('ManageUsers');
    const me = Gig.me.user.id;
    Gig.fill(body, users.map((u) => {
      const label = Gig.userLabel(u);
      const id = 'role-' + u.id;
      const role = admin && u.id !== me
        ? [h('label', { for: id, class: 'visually-hidden' }, 'Role of ' + label),
          h('select', { id, onchange: async (event) => {
            try {
              const set = await Gig.api('PUT', '/api/users/' + u.id + '/role', { role: event.target.value });
              Gig.status(status, label + ' is now ' + set.role + ' (until their next sign-in maps their groups again).', 'ok');
            } catch (e) {
              Gig.status(status, 'Role change failed: ' + e.message, 'error');
              await load();
            }
          } }, ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r)))]
        : (u.role || '—');
      const act = Gig.can('Impersonate') && u.id !== me && !Gig.me.impersonating
        ? h('button', { type: 'button', class: 'button', 'data-impersonate': u.email || String(u.id), onclick: async () => {
          try {
            await Gig.api('POST', '/api/impersonation', { user: u.id });
            window.location.assign('/');
          } catch (e) {
            Gig.status(status, 'Cannot act as ' + label + ': ' + e.message, 'error');
          }
        } }, 'Act as ' + label)
        : (u.id === me ? h('span', { class: 'muted' }, 'you') : '');
      return h('tr', {}, h('th', { scope: 'row' }, label), h('td', {}, u.email || '—'), h('td', {}, role), h('td', {}, act));
    }));
  }
  await load();
});
