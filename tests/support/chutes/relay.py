"""A custom chute whose cord passes calls through to a server its startup hook starts."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from chutes.chute import Chute

PORT = int(os.environ.get("RELAY_UPSTREAM_PORT", "18765"))
chute = Chute(username="tester", name="relay", image="parachutes/python:3.12")


class Answer(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        data = json.dumps({"via": "passthrough", "asked": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@chute.on_startup()
def start_server(self):
    self.server = ThreadingHTTPServer(("127.0.0.1", PORT), Answer)
    threading.Thread(target=self.server.serve_forever, daemon=True).start()


@chute.on_shutdown()
def stop_server(self):
    self.server.shutdown()


@chute.cord(
    public_api_path="/ask", passthrough=True, passthrough_port=PORT, passthrough_path="/v1/answer"
)
async def ask(self, **kwargs):
    pass
