// ts-client.mjs URL TOOL ARGUMENT_NAME [N] — the official TypeScript SDK (@modelcontextprotocol/sdk
// Client + StreamableHTTPClientTransport) as a real client: connect (initialize era: session,
// SSE-capable Accept), a few warm-up calls, then N sequential tools/call of TOOL with
// {ARGUMENT_NAME: "bench"}, each result checked to contain "bench". Prints one JSON line:
// {"client":"ts-sdk","n":N,"p50_ms":..,"mean_ms":..,"p99_ms":..,"slow":..,"connect_ms":..,"bad":..}
// (slow: calls that took 30 ms or more — the signature of a delayed-ACK stall).
// Env: TOKEN (sent as Authorization: Bearer), PEERS_NODE (the peers' node dir holding
// node_modules; the SDK is imported from there), WARMUP (default 20).
import { pathToFileURL } from "node:url";
import path from "node:path";

const [url, tool, argName, nArg] = process.argv.slice(2);
if (!url || !tool || !argName) {
  console.error("usage: ts-client.mjs URL TOOL ARGUMENT_NAME [N]");
  process.exit(2);
}
const n = Number(nArg ?? 200);
const warmup = Number(process.env.WARMUP ?? 20);
const sdk = path.join(process.env.PEERS_NODE ?? ".peers/node", "node_modules/@modelcontextprotocol/sdk/dist/esm");
const { Client } = await import(pathToFileURL(path.join(sdk, "client/index.js")).href);
const { StreamableHTTPClientTransport } = await import(pathToFileURL(path.join(sdk, "client/streamableHttp.js")).href);

const headers = process.env.TOKEN ? { Authorization: `Bearer ${process.env.TOKEN}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "gig-bench-ts", version: "0" });
const t0 = performance.now();
await client.connect(transport);
const connectMs = performance.now() - t0;

let bad = 0;
const call = async () => {
  const r = await client.callTool({ name: tool, arguments: { [argName]: "bench" } });
  const text = r?.content?.[0]?.text ?? "";
  if (r.isError || !text.includes("bench")) bad++;
};
for (let i = 0; i < warmup; i++) await call();

const ms = [];
for (let i = 0; i < n; i++) {
  const s = performance.now();
  await call();
  ms.push(performance.now() - s);
}
await transport.terminateSession().catch(() => {});
await client.close();
ms.sort((a, b) => a - b);
const pct = (p) => ms[Math.min(ms.length - 1, Math.max(0, Math.ceil((p / 100) * ms.length) - 1))];
const round = (x) => Math.round(x * 1000) / 1000;
console.log(JSON.stringify({
  client: "ts-sdk",
  protocol: transport.protocolVersion ?? null,
  n,
  p50_ms: round(pct(50)),
  mean_ms: round(ms.reduce((a, b) => a + b, 0) / ms.length),
  p99_ms: round(pct(99)),
  slow: ms.filter((x) => x >= 30).length,
  connect_ms: round(connectMs),
  bad,
}));
