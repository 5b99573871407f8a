"""Stands in for `vllm serve` on the first start only: answers /health, then drops the connection and exits on the
first completion request, as a crashed server would. Every later start runs the real vLLM (argv passed on).

Used by the retry test: `python vllm_dies_once.py MARKER VLLM_PYTHON -m vllm.entrypoints.openai.api_server ...`."""

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

marker, real = Path(sys.argv[1]), sys.argv[2:]
if marker.exists():
    os.execv(real[0], real)
marker.write_text("died once")
port = int(real[real.index("--port") + 1])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def do_POST(self):
        os._exit(1)  # mid-stage death: the client sees the connection drop


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
