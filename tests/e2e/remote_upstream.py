"""Remote MCP servers for tests/e2e/test_remote.py, run as their own processes:

    python remote_upstream.py bearer PORT CERT KEY TOKEN SEEN_FILE
        The official Python SDK's server (MCPServer, Streamable HTTP) over TLS, answering only
        requests with `Authorization: Bearer TOKEN`; every Authorization value it receives is
        appended to SEEN_FILE (so the test can see which key reached it). Tool: add(a, b).
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
    else:
        flood(port)
