// auth-preload.mjs — add `Authorization: Bearer $GIG_TEST_TOKEN` to every HTTP request made
// through undici (Node's global fetch AND the npm `undici` package's request/fetch).
//
//   GIG_TEST_TOKEN=secret node --import /abs/path/auth-preload.mjs SCRIPT.js ...
//
// How: wrap a dispatcher with an interceptor (Dispatcher.compose) and make it the global
// dispatcher. Node's bundled undici (fetch) and npm undici both read the global dispatcher from
// globalThis[Symbol.for('undici.globalDispatcher.1')], so one setGlobalDispatcher covers both.
// undici source, in order: npm `undici` resolved as the main script would resolve it
// (process.argv[1], e.g. conformance/dist/index.js -> its undici 7.x), then next to this file,
// then from the cwd; if none resolves, Node's bundled undici's own default Agent (reachable
// only via the global symbol after a first fetch() call; Node 22 has no `node:undici` module).
// An Authorization header that the caller set itself is kept (set GIG_TEST_TOKEN_FORCE=1 to
// replace it). No token -> no-op. GIG_AUTH_PRELOAD_DEBUG=1 prints which undici was used.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const token = process.env.GIG_TEST_TOKEN;
const force = process.env.GIG_TEST_TOKEN_FORCE === "1";
const debug = (...a) => { if (process.env.GIG_AUTH_PRELOAD_DEBUG === "1") console.error("[auth-preload]", ...a); };
const SYM = Symbol.for("undici.globalDispatcher.1");

function withAuth(headers, value) {
  const isAuth = (k) => String(k).toLowerCase() === "authorization";
  if (headers == null) return { authorization: value };
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {          // [[k, v], ...]
      const rest = headers.filter(([k]) => !isAuth(k));
      if (!force && rest.length !== headers.length) return headers;
      return [...rest, ["authorization", value]];
    }
    const out = [];                                                 // [k, v, k, v, ...]
    let had = false;
    for (let i = 0; i < headers.length; i += 2) {
      if (isAuth(headers[i])) { had = true; continue; }
      out.push(headers[i], headers[i + 1]);
    }
    if (had && !force) return headers;
    out.push("authorization", value);
    return out;
  }
  if (typeof headers[Symbol.iterator] === "function") {             // Headers / Map / iterable of pairs
    return withAuth(Array.from(headers, ([k, v]) => [k, v]), value);
  }
  const out = {};                                                   // plain object
  let had = false;
  for (const [k, v] of Object.entries(headers)) {
    if (isAuth(k)) { had = true; if (!force) out[k] = v; continue; }
    out[k] = v;
  }
  if (!had || force) out.authorization = value;
  return out;
}

const interceptor = (dispatch) => (opts, handler) =>
  dispatch({ ...opts, headers: withAuth(opts.headers, `Bearer ${token}`) }, handler);

function loadNpmUndici() {
  const bases = [];
  if (process.argv[1]) bases.push(path.resolve(process.argv[1]));
  bases.push(fileURLToPath(import.meta.url));
  bases.push(path.join(process.cwd(), "noop.js"));
  for (const base of bases) {
    try {
      const req = createRequire(base);
      const resolved = req.resolve("undici");
      return { undici: req(resolved), from: resolved };
    } catch { /* try next */ }
  }
  return null;
}

if (token) {
  const npm = loadNpmUndici();
  if (npm && typeof npm.undici.Agent?.prototype?.compose === "function") {
    npm.undici.setGlobalDispatcher(new npm.undici.Agent().compose(interceptor));
    debug("npm undici", npm.undici.getGlobalDispatcher && "from", npm.from);
  } else {
    // Node's fetch loads its bundled undici lazily, on the first call; a data: URL fetch loads it
    // (which installs its default Agent as the global dispatcher) without any network I/O.
    await (await fetch("data:,")).arrayBuffer();
    const base = globalThis[SYM];
    if (!base || typeof base.compose !== "function") {
      throw new Error("auth-preload: no undici dispatcher found to wrap");
    }
    const composed = base.compose(interceptor);
    for (const s of [SYM, Symbol.for("undici.globalDispatcher.2")]) {
      Object.defineProperty(globalThis, s, { value: composed, writable: true, enumerable: false, configurable: false });
    }
    debug("node bundled undici", process.versions.undici);
  }
}
