"""Real local servers for testing the OpenAI-compatible client (127.0.0.1 only).

- ``ScriptedChatServer``: a small HTTP server (``http.server``) implementing
  ``POST /v1/chat/completions`` (and ``GET /v1/models``). It answers with texts
  the test chose, or with a malformed body, and records every request (headers
  and JSON body) so tests can check what the client really sent.
- ``SilentServer``: a TCP server that accepts connections and never answers
  (a hung server), counting connections.
- ``transformers_serve``: starts ``transformers serve`` on a saved checkpoint in
  a subprocess on a free loopback port, waits for it, and stops it.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScriptedChatServer:
    """An OpenAI-compatible chat server on 127.0.0.1 that answers what it is told.

    Args:
        answer: ``body -> text`` for each chat request (the request's JSON body).
        mode: ``"ok"`` (a proper chat completion), ``"garbage"`` (200 with a
            body that is not JSON), ``"no_choices"`` (JSON without choices),
            ``"http_500"``, or ``"reasoning_split"`` (the ``<think>`` block of the
            text sent in a separate ``reasoning_content`` field, like
            transformers serve and vLLM do for Qwen models).
    Attributes:
        requests: one ``{"path", "headers" (lower-case names), "body"}`` dict per request.
        base_url: ``http://127.0.0.1:PORT/v1``.
    """

    def __init__(self, answer: Callable[[dict], str] = lambda body: "", mode: str = "ok"):
        self.answer = answer
        self.mode = mode
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, payload: bytes, content_type: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": []}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                headers = {name.lower(): value for name, value in self.headers.items()}
                server.requests.append({"path": self.path, "headers": headers, "body": body})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                if server.mode == "garbage":
                    return self._send(200, b"<html>this is not JSON {{{")
                if server.mode == "http_500":
                    return self._send(500, b'{"error": {"message": "the model crashed"}}')
                if server.mode == "no_choices":
                    return self._send(200, json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                                       "model": body["model"], "choices": []}).encode())
                text = server.answer(body)
                message = {"role": "assistant", "content": text}
                if server.mode == "reasoning_split" and "</think>" in text:
                    think, content = text.split("</think>", 1)
                    message = {"role": "assistant", "content": content,
                               "reasoning_content": think.replace("<think>", "", 1)}
                completion = {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": len(text.split()),
                              "total_tokens": 7 + len(text.split())},
                }
                self._send(200, json.dumps(completion).encode())

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (until closed).

    Attributes: ``connections`` (how many were accepted), ``base_url``."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._held.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()


@contextlib.contextmanager
def transformers_serve(model_dir: str, startup_timeout: float = 90.0) -> Iterator[dict]:
    """Run ``transformers serve MODEL_DIR`` on 127.0.0.1 and yield
    ``{"base_url", "model", "command", "startup_s"}`` once ``/v1/models`` answers.

    The model is preloaded (positional FORCE_MODEL argument, the local path is
    its name). Raises RuntimeError with the server's log when it does not come
    up within ``startup_timeout`` seconds; the process is always stopped."""
    port = free_port()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", model_dir,
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "warning"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", NO_PROXY="127.0.0.1,localhost")
    log = open(os.path.join(os.path.dirname(model_dir), f"transformers_serve_{port}.log"), "w+b")  # noqa: SIM115
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/v1/models"
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {process.returncode}: {_tail(log)}")
            if time.perf_counter() - start > startup_timeout:
                raise RuntimeError(f"transformers serve not ready after {startup_timeout} s: {_tail(log)}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": model_dir, "command": command,
               "startup_s": time.perf_counter() - start}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _tail(log, size: int = 3000) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-size:]
