// oidc-provider.mjs — a real OpenID Provider (npm oidc-provider 9.x) for end-to-end tests.
//
//   node oidc-provider.mjs '{"port": 0, "clients": [...], "users": {...}}'
//   OIDC_PROVIDER_CONFIG='{...}' node oidc-provider.mjs          (used when there is no argument)
//
// Config (JSON):
//   port     0 = any free port. Always binds 127.0.0.1; the issuer is http://127.0.0.1:PORT.
//   tls      {cert, key}: PEM file paths; serve https (the issuer is https://127.0.0.1:PORT).
//   upstream {accessTokenTtl}: act as a remote MCP server's authorization server too: open
//            dynamic registration, introspection, revocation, the client-credentials grant, a
//            refresh token for every client allowed the refresh_token grant, the `mcp` scope,
//            resource indicators (any resource; opaque tokens), and access tokens living
//            accessTokenTtl seconds. With metadataDocuments: true, clients may also be known by
//            client ID metadata documents (an https client_id URL fetched and checked by
//            oidc-provider; loopback documents allowed, the test CA from NODE_EXTRA_CA_CERTS).
//   clients  [{client_id, client_secret, redirect_uris: [...], post_logout_redirect_uris: [...],
//              token_endpoint_auth_method: "client_secret_basic" | "client_secret_post",
//              grant_types: [...] (default ["authorization_code"])}]
//   users    {"alice": {"sub": "u-alice", "email": "...", "name": "...", "groups": ["admins"]}}
// Once listening it prints ONE line on stdout: {"listening": PORT, "issuer": "http://127.0.0.1:PORT"}
// (everything else, oidc-provider's warnings included, goes to stderr).
//
// Behaviour: authorization code flow only, PKCE S256 required for every client; scopes openid,
// email, profile, groups, and the ID token itself carries email/email_verified, name and groups
// (conformIdTokenClaims=false). devInteractions pages: a login form (login = a key of `users`, any
// password; an unknown login ends the flow with error=access_denied at the client's redirect_uri)
// then a consent form ("Continue"). RP-initiated logout (end_session_endpoint) is on. ID tokens are
// RS256-signed with a key generated at start. Everything is in memory.
//
// Test-only endpoints on the same port:
//   POST /__test/forget {"sub": "..."}  (upstream mode) -> {"forgot": N}: destroys every grant of
//        that account, as an authorization server does when a user revokes access there; their
//        refresh tokens then get invalid_grant.
//   POST /__test/hostile {"mode": null|"aud"|"iss"|"nonce"|"expired"|"signature"}  -> {"mode": ...}
//   GET  /__test/hostile                                                            -> {"mode": ...}
// While a mode is set, the token endpoint's id_token is replaced by a copy with one thing wrong,
// re-signed with the real key (aud="someone-else", iss="http://127.0.0.1:1/other", nonce="wrong",
// expired: iat/exp/auth_time shifted so exp is one hour in the past) or, for "signature", the
// unaltered claims signed by another RSA key that carries the same kid.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

import Provider from 'oidc-provider';

// jose as oidc-provider itself resolves it (it is oidc-provider's own dependency).
const require = createRequire(import.meta.url);
const jose = await import(
  pathToFileURL(createRequire(require.resolve('oidc-provider')).resolve('jose')).href
);

const raw = process.argv[2] ?? process.env.OIDC_PROVIDER_CONFIG;
if (!raw) {
  console.error('usage: oidc-provider.mjs CONFIG_JSON   (or OIDC_PROVIDER_CONFIG=CONFIG_JSON)');
  process.exit(2);
}
const config = JSON.parse(raw);
const users = config.users ?? {};
const bySub = new Map(Object.values(users).map((u) => [u.sub, u]));

const KID = 'test-rs256';
const rsaJwk = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const signingJwk = { ...rsaJwk(), kid: KID, alg: 'RS256', use: 'sig' };
const signingKey = await jose.importJWK(signingJwk, 'RS256');
const impostorKey = await jose.importJWK({ ...rsaJwk(), kid: KID, alg: 'RS256' }, 'RS256');

// Listen first (port 0 allowed), then build the provider for the issuer that port gives.
let handler = (_req, res) => { res.statusCode = 503; res.end(); };
const server = config.tls
  ? https.createServer(
    { cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) },
    (req, res) => handler(req, res),
  )
  : http.createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, config.host ?? '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `${config.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
const upstream = config.upstream;

const provider = new Provider(issuer, {
  clients: (config.clients ?? []).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
    grant_types: c.grant_types ?? ['authorization_code'],
    response_types: (c.grant_types ?? ['authorization_code']).includes('authorization_code') ? ['code'] : [],
  })),
  jwks: { keys: [signingJwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  responseTypes: ['code'],
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', ...(upstream ? ['mcp'] : [])],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    ...(upstream ? {
      registration: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
      // MCP clients name the server they want a token for (RFC 8707): any resource is
      // accepted, its tokens opaque, scoped to `mcp`, and bound to it.
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'mcp',
          accessTokenFormat: 'opaque',
          accessTokenTTL: upstream.accessTokenTtl ?? 3600,
        }),
      },
      ...(upstream.metadataDocuments ? {
        clientIdMetadataDocument: { enabled: true, ack: 'draft-02' },
      } : {}),
    } : {}),
  },
  // oidc-provider refuses to fetch from special-use addresses (its SSRF guard, a dispatcher
  // it passes in); the test's gateway is on loopback, so documents are fetched without it.
  ...(upstream?.metadataDocuments ? {
    fetch: (url, { dispatcher: _guard, ...options }) => globalThis.fetch(url, options),
  } : {}),
  ...(upstream ? {
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      AccessToken: upstream.accessTokenTtl ?? 3600,
      ClientCredentials: upstream.accessTokenTtl ?? 3600,
    },
  } : {}),
  // accountId is the user's `sub` (the login form maps the login name to it, see below).
  async findAccount(_ctx, id) {
    const u = bySub.get(id);
    if (!u) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: u.sub, email: u.email, email_verified: true, name: u.name, groups: u.groups ?? [] };
      },
    };
  },
});

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// Grants by account, for /__test/forget.
const grantsBySub = new Map();
for (const kind of ['access_token.saved', 'refresh_token.saved']) {
  provider.on(kind, (token) => {
    if (!token.accountId || !token.grantId) return;
    if (!grantsBySub.has(token.accountId)) grantsBySub.set(token.accountId, new Set());
    grantsBySub.get(token.accountId).add(token.grantId);
  });
}

// Runs before oidc-provider's own routes (Provider#use inserts ahead of them).
let hostile = null;
const MODES = new Set(['aud', 'iss', 'nonce', 'expired', 'signature']);
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/hostile') {
    if (ctx.method === 'POST') {
      let mode;
      try {
        ({ mode } = JSON.parse(await readBody(ctx.req)));
      } catch {
        ctx.status = 400; ctx.body = { error: 'body must be JSON {"mode": ...}' }; return;
      }
      if (mode !== null && !MODES.has(mode)) {
        ctx.status = 400; ctx.body = { error: `unknown mode ${mode}` }; return;
      }
      hostile = mode;
      console.error(`[oidc-provider] hostile mode: ${hostile}`);
    } else if (ctx.method !== 'GET') {
      ctx.status = 405; return;
    }
    ctx.body = { mode: hostile };
    return;
  }

  if (upstream && ctx.path === '/__test/forget' && ctx.method === 'POST') {
    let sub;
    try {
      ({ sub } = JSON.parse(await readBody(ctx.req)));
    } catch {
      ctx.status = 400; ctx.body = { error: 'body must be JSON {"sub": ...}' }; return;
    }
    let forgot = 0;
    for (const id of grantsBySub.get(sub) ?? []) {
      const grant = await provider.Grant.find(id);
      if (grant) { await grant.destroy(); forgot += 1; }
    }
    grantsBySub.delete(sub);
    console.error(`[oidc-provider] forgot ${forgot} grant(s) of ${sub}`);
    ctx.body = { forgot };
    return;
  }

  // The login step of devInteractions: the login name selects the user; unknown names are refused.
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch {
      details = undefined; // let oidc-provider render its own error
    }
    if (details?.prompt.name === 'login') {
      const body = new URLSearchParams(await readBody(ctx.req));
      const user = users[body.get('login') ?? ''];
      const result = user
        ? { login: { accountId: user.sub } }
        : { error: 'access_denied', error_description: 'unknown user' };
      const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
      ctx.status = 303;
      ctx.redirect(to);
      return;
    }
  }

  await next();

  if (hostile && ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token) {
    ctx.body = { ...ctx.body, id_token: await tamper(ctx.body.id_token, hostile) };
  }
});

async function tamper(idToken, mode) {
  const header = jose.decodeProtectedHeader(idToken);
  const claims = jose.decodeJwt(idToken);
  let key = signingKey;
  switch (mode) {
    case 'aud': claims.aud = 'someone-else'; break;
    case 'iss': claims.iss = 'http://127.0.0.1:1/other'; break;
    case 'nonce': claims.nonce = 'wrong'; break;
    case 'expired': {
      const shift = claims.exp - Math.floor(Date.now() / 1000) + 3600;
      for (const k of ['exp', 'iat', 'auth_time']) if (typeof claims[k] === 'number') claims[k] -= shift;
      break;
    }
    case 'signature': key = impostorKey; break;
    default: throw new Error(`unknown hostile mode ${mode}`);
  }
  return new jose.SignJWT(claims).setProtectedHeader(header).sign(key);
}

// Static clients are only validated on first use: validate them now so a bad config fails here.
for (const c of config.clients ?? []) {
  try {
    await provider.Client.find(c.client_id);
  } catch (e) {
    console.error(`[oidc-provider] invalid client ${c.client_id}: ${e.error_description ?? e.message}`);
    process.exit(2);
  }
}

handler = provider.callback();
process.stdout.write(`${JSON.stringify({ listening: port, issuer })}\n`);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => { server.close(); process.exit(0); });
}
