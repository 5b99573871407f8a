"""Stand-ins for a vLLM server, on loopback, for tests that need no real vLLM.

`serve(mode)` runs one in a thread of the test process; run as a script (`python fake_vllm.py ... --port N ...`,
the argv translora gives a managed server) it serves until killed. Modes:
- "ok": /health, /v1/models, /tokenize (404: nothing to compare) and /v1/completions answer;
- "other-model": /tokenize splits every text into [1, 2, 3], as no real tokenizer here does;
- "stall": accepts each request and never answers it.
With `api_key`, every request without `Authorization: Bearer <api_key>` gets 401, as from a server started with
VLLM_API_KEY.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handler(mode: str, api_key: str | None = None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refused(self) -> bool:
            if api_key is None or self.headers.get("Authorization") == f"Bearer {api_key}":
                return False
            self._send(401, {"error": "Unauthorized"})
            return True

        def do_GET(self) -> None:
            if self._refused():
                return
            if self.path == "/v1/models":
                self._send(200, {"data": [{"id": "base", "root": "/models/fake", "parent": None}]})
            else:
                self._send(200, {})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self._refused():
                return
            if mode == "stall":
                time.sleep(3600)
            elif self.path == "/tokenize":
                if mode == "other-model":
                    self._send(200, {"tokens": [1, 2, 3]})
                else:
                    self._send(404, {"detail": "Not Found"})
            elif self.path == "/v1/completions":
                prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
                self._send(200, {"choices": [{"index": i, "text": " True"} for i in range(len(prompts))]})
            else:
                self._send(404, {"detail": "Not Found"})

    return Handler


def serve(mode: str = "ok", port: int = 0, api_key: str | None = None) -> ThreadingHTTPServer:
    """A server in a daemon thread; its URL is `url(server)`; call `server.shutdown()` when done."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(mode, api_key))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    args = sys.argv[1:]
    ThreadingHTTPServer(("127.0.0.1", int(args[args.index("--port") + 1])), handler("ok")).serve_forever()
