// node --import /path/loopback-preload.mjs server.js
// Forces every TCP listen() that gave no host (e.g. express `app.listen(PORT)`,
// which binds all interfaces) onto LISTEN_HOST (default 127.0.0.1).
import net from "node:net";

const HOST = process.env.LISTEN_HOST || "127.0.0.1";
const orig = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const a0 = args[0];
  if (a0 !== null && typeof a0 === "object" && !Array.isArray(a0)) {
    // listen(options[, cb]) — TCP only (no path/handle/fd)
    if (a0.path === undefined && a0.handle === undefined && a0.fd === undefined && !a0.host) {
      args[0] = { ...a0, host: HOST };
    }
  } else if (typeof a0 === "number" || (typeof a0 === "string" && /^\d+$/.test(a0)) || a0 === undefined) {
    // listen(port[, host][, backlog][, cb])
    if (typeof args[1] !== "string") args.splice(1, 0, HOST);
  }
  return orig.apply(this, args);
};
