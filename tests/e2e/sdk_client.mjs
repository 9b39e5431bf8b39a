// The official MCP TypeScript SDK as a profile-token client: connect, list tools, call one.
// Usage: node sdk_client.mjs URL TOKEN TOOL ARGS_JSON  -> one JSON line on stdout.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, tool, args] = process.argv.slice(2);
const out = {};
try {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: "gig-e2e-ts", version: "0" });
  await client.connect(transport);
  out.tools = (await client.listTools()).tools.map((t) => ({ name: t.name, description: t.description }));
  try {
    const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
    out.call = { isError: result.isError ?? false, text: result.content.map((c) => c.text ?? "").join("") };
  } catch (e) {
    out.call = { error: String(e.message ?? e) };
  }
  await client.close();
} catch (e) {
  out.connect_error = String(e.message ?? e);
}
console.log(JSON.stringify(out));
