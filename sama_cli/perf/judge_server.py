"""A scripted OpenAI-compatible chat-completions server on localhost, for tests and the judge
throughput benchmark: it speaks just enough of the protocol (`POST /v1/chat/completions`) for the
`openai` client, and its replies are chosen by a tag written into the prompt, e.g. `#good7`.

Tags (the first one found in the request's text decides):
- `#goodN`: strict JSON, every known criterion scored N (N may be a decimal: `#good8.5`).
- `#proseN`: the same JSON object inside prose and a code fence.
- `#garbage`: never a JSON object.
- `#rate`: HTTP 429 on the first request for this prompt, then like `#good7`.
- `#slow`: the first request for this prompt sleeps `slow_seconds` (past the client's timeout), then `#good7`.
- `#motionN`: every criterion 9, motion consistency N (for the data filter's thresholds).
- no tag: `#good7`.

`reject_schema=True` answers 400 to any request carrying `response_format`, as endpoints without JSON
schema support do (`schema_requests` counts those requests). Every request is counted per tag;
`latency` delays every reply.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sama_cli.eval.openve import OPENVE_RUBRICS

KNOWN_KEYS = ("instruction_following", "preservation", "quality", "visual_quality", "content_preservation",
              "motion_consistency", "SA", "SP", "CP", "AN", "SN", "MN", "VF", "TS", "ES",
              *sorted({c.key for r in OPENVE_RUBRICS.values() for c in r.criteria}))
TAG = re.compile(r"#(good|prose|garbage|rate|slow|motion)(\d+(?:\.\d+)?)?")


class ScriptedServer:
    def __init__(self, *, latency: float = 0.0, slow_seconds: float = 2.0, reject_schema: bool = False):
        self.latency, self.slow_seconds, self.reject_schema = latency, slow_seconds, reject_schema
        self.requests: Counter[str] = Counter()  # tag -> requests received
        self.seen: Counter[str] = Counter()  # prompt text -> requests received
        self.schema_requests = 0  # requests that carried response_format
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- replies ---------------------------------------------------------------------------------
    @staticmethod
    def scores(value: float, motion: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {k: value for k in KNOWN_KEYS}
        if motion is not None:
            out["motion_consistency"] = motion
        out["reason"] = "scripted"
        return out

    def reply(self, body: dict[str, Any]) -> tuple[int, str | None, float]:
        """(HTTP status, message content or None, seconds to wait first) for a request body."""
        text = " ".join(part.get("text", "") for m in body.get("messages", [])
                        for part in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
                        if isinstance(part, dict))
        m = TAG.search(text)
        tag, number = (m.group(1), m.group(2)) if m else ("good", None)
        with self.lock:
            self.requests[tag] += 1
            self.seen[text] += 1
            first = self.seen[text] == 1
            self.schema_requests += "response_format" in body
        if self.reject_schema and "response_format" in body:
            return 400, None, 0.0
        value = float(number) if number else 7.0
        if tag == "garbage":
            return 200, "I would rather not put a number on art.", 0.0
        if tag == "rate" and first:
            return 429, None, 0.0
        if tag == "slow" and first:
            return 200, json.dumps(self.scores(7.0)), self.slow_seconds
        if tag == "motion":
            return 200, json.dumps(self.scores(9.0, value)), 0.0
        if tag == "prose":
            return 200, f"Here is my assessment.\n```json\n{json.dumps(self.scores(value))}\n```\nThanks!", 0.0
        return 200, json.dumps(self.scores(value if tag == "good" else 7.0)), 0.0

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                status, content, wait = server.reply(body)
                time.sleep(wait + server.latency)
                if status != 200:
                    payload = {"error": {"message": f"scripted {status}", "type": "scripted", "code": status}}
                else:
                    payload = {"id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
                               "model": body.get("model", "scripted"),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        return Handler


def main() -> None:
    """Serve from a process of its own (the throughput benchmark: the server must not share the
    harness's interpreter lock): prints the base URL, then serves until killed."""
    import argparse
    import sys

    p = argparse.ArgumentParser(description="A scripted OpenAI-compatible chat-completions server.")
    p.add_argument("--latency", type=float, default=0.0)
    args = p.parse_args()
    with ScriptedServer(latency=args.latency) as server:
        sys.stdout.write(server.base_url + "\n")
        sys.stdout.flush()
        server.thread.join()


if __name__ == "__main__":
    main()
