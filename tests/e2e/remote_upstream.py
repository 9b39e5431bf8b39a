"""Remote MCP servers for tests/e2e/test_remote.py, run as their own processes:

    python remote_upstream.py bearer PORT CERT KEY TOKEN SEEN_FILE
        The official Python SDK's server (MCPServer, Streamable HTTP) over TLS, answering only
        requests with `Authorization: Bearer TOKEN`; every Authorization value it receives is
        appended to SEEN_FILE (so the test can see which key reached it). Tool: add(a, b).
    python remote_upstream.py oauth PORT CERT KEY ISSUER CA RS_CLIENT RS_SECRET SEEN_FILE
        The same server as an OAuth protected resource of ISSUER (an oidc-provider over TLS,
        trusted through CA): it publishes its protected-resource metadata, verifies every
        bearer by introspection (as client RS_CLIENT), appends each token it accepts to
        SEEN_FILE; its tool whoami answers the token's subject (client:ID for a client's own), its
        resource notes://mine is that subject's own data.
    python remote_upstream.py flood PORT
        A legacy HTTP+SSE server that names its endpoint, then streams one endless event.

Both listen on 127.0.0.1 only and print "ready" once listening."""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def bearer(port: int, cert: str, key: str, token: str, seen_file: str) -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bearer-upstream")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    app = server.streamable_http_app(host="127.0.0.1")
    seen = open(seen_file, "a", buffering=1)

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            seen.write(auth + "\n")
            if auth != f"Bearer {token}":
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
        await app(scope, receive, send)

    config = uvicorn.Config(guarded, host="127.0.0.1", port=port, ssl_certfile=cert, ssl_keyfile=key,
                            log_level="warning", lifespan="on")
    server_ = uvicorn.Server(config)
    threading.Thread(target=lambda: (time.sleep(1.0), print("ready", flush=True)), daemon=True).start()
    server_.run()


def oauth(port: int, cert: str, key: str, issuer: str, ca: str, rs_client: str, rs_secret: str,
          seen_file: str) -> None:
    import httpx
    import uvicorn
    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp.server.auth.provider import AccessToken
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    seen = open(seen_file, "a", buffering=1)
    resource = f"https://127.0.0.1:{port}/mcp"

    class Introspecting:
        async def verify_token(self, token: str) -> AccessToken | None:
            async with httpx.AsyncClient(verify=ca) as http:
                answer = await http.post(f"{issuer}/token/introspection", data={"token": token},
                                         auth=(rs_client, rs_secret))
            info = answer.json()
            if not info.get("active"):
                return None
            seen.write(token + "\n")
            return AccessToken(token=token, client_id=info.get("client_id", ""),
                               scopes=info.get("scope", "").split(), expires_at=info.get("exp"),
                               subject=info.get("sub"))

    server = MCPServer("oauth-upstream", token_verifier=Introspecting(),
                       auth=AuthSettings(issuer_url=issuer, resource_server_url=resource,
                                         validate_token_resource=False))

    @server.tool()
    def whoami() -> str:
        """The subject of the token this call carried."""
        token = get_access_token()
        if token is None:
            return "nobody"
        return token.subject or f"client:{token.client_id}"

    @server.resource("notes://mine")
    def notes() -> str:
        """The caller's own notes: data of whoever's token the request carried."""
        token = get_access_token()
        return f"notes of {token.subject if token else 'nobody'}"

    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ssl_certfile=cert, ssl_keyfile=key,
                            log_level="warning", lifespan="on")
    threading.Thread(target=lambda: (time.sleep(1.0), print("ready", flush=True)), daemon=True).start()
    uvicorn.Server(config).run()


def flood(port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                self.wfile.write(b"event: endpoint\ndata: /messages\n\n")
                self.wfile.write(b"data: ")
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass

        def do_POST(self):  # noqa: N802
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    print("ready", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "bearer":
        bearer(port, *sys.argv[3:7])
    elif mode == "oauth":
        oauth(port, *sys.argv[3:10])
    else:
        flood(port)
