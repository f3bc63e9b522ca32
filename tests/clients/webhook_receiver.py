#!/usr/bin/env python3
"""A webhook receiver for rotor's tests (tests/it/webhooks.rs).

Verifies every request with the unmodified `standardwebhooks` package and appends one
JSON line per request to --out: {"id", "type", "user", "verified", "body"}. Answers 204
when the signature verifies, 400 when not. --delay makes every answer wait (a slow
receiver); the request is recorded before the wait. Prints "listening PORT" once ready.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    verifier = Webhook(args.secret)
    lock = threading.Lock()
    out = open(args.out, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k: v for k, v in self.headers.items()}
            try:
                payload = verifier.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                payload = json.loads(body or b"null")
                verified = False
            data = (payload or {}).get("data") or {}
            record = {
                "id": headers.get("webhook-id") or headers.get("Webhook-Id"),
                "type": (payload or {}).get("type"),
                "user": data.get("user_id"),
                "verified": verified,
                "body": body.decode("utf-8"),
            }
            with lock:
                out.write(json.dumps(record) + "\n")
                out.flush()
            if args.delay:
                time.sleep(args.delay)
            self.send_response(204 if verified else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
