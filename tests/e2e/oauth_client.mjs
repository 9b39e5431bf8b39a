// The official MCP TypeScript SDK as an OAuth client of the gateway: discovery from the 401,
// registration (dynamic, or a metadata document when CLIENT_METADATA_URL is given), the browser
// step handed to the test, token, tools/list and one call.
// Usage: node oauth_client.mjs URL REDIRECT_URL TOOL [CLIENT_METADATA_URL]
// Protocol: prints "AUTHORIZE <url>" and reads one line back, the URL the browser landed on (the
// redirect URI with code, state and iss); ends with one JSON line.
import { createInterface } from "node:readline";
import { randomBytes } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [url, redirectUrl, tool, metadataUrl] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

class Provider {
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: "gig e2e typescript",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  get clientMetadataUrl() { return metadataUrl || undefined; }
  state() { this.sentState = randomBytes(16).toString("base64url"); return this.sentState; }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  redirectToAuthorization(authorizationUrl) { this.authorizationUrl = authorizationUrl; }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
  invalidateCredentials(scope) {
    if (scope === "all" || scope === "client") this.client = undefined;
    if (scope === "all" || scope === "tokens") this.saved = undefined;
  }
}

const provider = new Provider();
const connect = async () => {
  const client = new Client({ name: "gig-e2e-ts-oauth", version: "0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
  return client;
};
const out = {};
try {
  let client;
  try {
    client = await connect();
    throw new Error("connected without signing in");
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  console.log(`AUTHORIZE ${provider.authorizationUrl}`);
  const landed = new URL((await lines.next()).value.trim());
  const q = landed.searchParams;
  if (q.get("error")) throw new Error(`authorization refused: ${q.get("error")}`);
  if (q.get("state") !== provider.sentState) throw new Error("state mismatch");
  out.iss = q.get("iss");
  // The transport that saw the 401 finishes the exchange; a fresh one connects with the token.
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await transport.finishAuth(q.get("code"));
  client = await connect();
  out.client_id = provider.client?.client_id;
  out.scope = provider.saved?.scope;
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  const result = await client.callTool({ name: tool, arguments: { message: "hi from ts" } });
  out.call = result.content.map((c) => c.text ?? "").join("");
  await client.close();
} catch (e) {
  out.error = String(e.message ?? e);
}
console.log(JSON.stringify(out));
process.exit(0);
