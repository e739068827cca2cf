#!/usr/bin/python3
"""authx dashboard: a tiny HTTP server for the page in this directory.

Serves index.html, dashboard.js and dashboard.css, and three JSON routes that
call the extension's admin functions:

  GET /api/usage?since=24%20hours[&api_key_id=UUID]  authx.usage_summary
  GET /api/security?since=24%20hours                 authx.security_summary
  GET /api/health                                    authx.health

The function's jsonb is passed through as it is.  On a database error the
answer is {"error": MESSAGE, "sqlstate": CODE} with status 400 for a bad
argument (SQLSTATE class 22, e.g. 22007 for a malformed interval) and 503
for anything else (no connection, missing privilege, ...).

Environment:
  AUTHX_DSN  libpq connection string or URI (default: empty, i.e. the PG*
             variables); the role must be a member of authx_admin
  PORT       port to listen on (default 8080)
  HOST       address to listen on (default 127.0.0.1)

Python 3 standard library plus psycopg2 (Debian: python3-psycopg2).
"""

import json
import os
import re
import signal
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg2
import psycopg2.extensions

HERE = os.path.dirname(os.path.abspath(__file__))

# The only files served: no directory listing, no path from the request
# ever reaches the file system.
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}

# Everything the page loads comes from this server.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")

DEFAULT_SINCE = "24 hours"
MAX_PARAM_LEN = 100
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT = "15s"

# route -> (SQL, [(query parameter, default, SQL cast)])
ROUTES = {
    "/api/usage": (
        "SELECT authx.usage_summary(%s::interval, %s::uuid)::text",
        [("since", DEFAULT_SINCE), ("api_key_id", None)],
    ),
    "/api/security": (
        "SELECT authx.security_summary(%s::interval)::text",
        [("since", DEFAULT_SINCE)],
    ),
    "/api/health": ("SELECT authx.health()::text", []),
}


class Config:
    def __init__(self, environ):
        self.dsn = environ.get("AUTHX_DSN", "")
        self.host = environ.get("HOST", "127.0.0.1")
        # Host names the browser may use (ALLOWED_HOSTS, comma-separated, adds more).
        self.allowed_hosts = {"localhost", "127.0.0.1", "::1", self.host.strip("[]").lower()} | {
            h.strip().lower() for h in environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()}
        try:
            self.port = int(environ.get("PORT", "8080"))
        except ValueError:
            sys.exit("PORT must be a number")
        try:
            parsed = psycopg2.extensions.parse_dsn(self.dsn)
        except psycopg2.Error:
            # libpq's message may quote a piece of the string, which may be
            # the password: say no more than this.
            sys.exit("AUTHX_DSN is not a valid libpq connection string or URI")
        # Secrets to keep out of every log line and answer.
        self.secrets = [s for s in (parsed.get("password"),
                                    environ.get("PGPASSWORD")) if s]
        # Sensible defaults, unless the DSN says otherwise.
        extra = {}
        if "connect_timeout" not in parsed:
            extra["connect_timeout"] = str(CONNECT_TIMEOUT_S)
        if "application_name" not in parsed:
            extra["application_name"] = "authx-dashboard"
        self.connect_dsn = psycopg2.extensions.make_dsn(self.dsn, **extra) \
            if extra else self.dsn
        self.display_dsn = self.redact_dsn(parsed)

    @staticmethod
    def redact_dsn(parsed):
        if not parsed:
            return "(PG* environment defaults)"
        return " ".join("%s=%s" % (k, "********" if k == "password" else v)
                        for k, v in sorted(parsed.items()))

    def redact(self, text):
        for s in self.secrets:
            text = text.replace(s, "********")
        # A URI with a password anywhere in a message.
        return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1********@", text)


CONFIG = None


def query(sql, params):
    """Run one statement on a new connection: (status, body bytes)."""
    conn = None
    try:
        conn = psycopg2.connect(CONFIG.connect_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", (STATEMENT_TIMEOUT,))
            cur.execute(sql, params)
            (text,) = cur.fetchone()
        if text is None:
            return HTTPStatus.SERVICE_UNAVAILABLE, error_body("the function returned NULL", None)
        return HTTPStatus.OK, text.encode("utf-8")
    except psycopg2.Error as e:
        code = e.pgcode
        message = e.diag.message_primary if code else None
        if not message:
            # No server error (no connection): libpq's first line.
            lines = str(e).strip().splitlines()
            message = lines[0] if lines else type(e).__name__
        status = (HTTPStatus.BAD_REQUEST if code and code.startswith("22")
                  else HTTPStatus.SERVICE_UNAVAILABLE)
        return status, error_body(message, code)
    finally:
        if conn is not None:
            conn.close()


def error_body(message, sqlstate):
    return json.dumps({"error": CONFIG.redact(message), "sqlstate": sqlstate}).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "authx-dashboard"

    def do_GET(self):
        # DNS rebinding: a page of another site must not reach this server
        # through a name it controls; answer only to the names it is bound as.
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in CONFIG.allowed_hosts:
            self.send(HTTPStatus.MISDIRECTED_REQUEST, b'{"error": "unknown Host", "sqlstate": null}',
                      "application/json")
            return
        url = urlsplit(self.path)
        if url.path in ROUTES:
            self.api(url)
        elif url.path in STATIC:
            self.static(*STATIC[url.path])
        else:
            self.send(HTTPStatus.NOT_FOUND, b'{"error": "not found", "sqlstate": null}',
                      "application/json")

    def do_HEAD(self):
        self.do_GET()

    def api(self, url):
        sql, spec = ROUTES[url.path]
        qs = parse_qs(url.query, keep_blank_values=True)
        params = []
        for name, default in spec:
            value = qs.get(name, [default])[-1]
            if value == "" and default is None:
                value = None
            if value is not None and len(value) > MAX_PARAM_LEN:
                self.send(HTTPStatus.BAD_REQUEST,
                          error_body("%s is too long" % name, "22023"), "application/json")
                return
            params.append(value)
        status, body = query(sql, params)
        self.send(status, body, "application/json")

    def static(self, name, ctype):
        try:
            with open(os.path.join(HERE, name), "rb") as f:
                body = f.read()
        except OSError:
            self.send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        self.send(HTTPStatus.OK, body, ctype, cache="no-cache")

    def send(self, status, body, ctype, cache="no-store"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("[%s] %s %s\n" % (self.log_date_time_string(), self.address_string(),
                                            CONFIG.redact(fmt % args)))


def on_sigterm(signum, frame):
    """SIGTERM ends serve_forever like Ctrl-C does."""
    raise KeyboardInterrupt


def main():
    global CONFIG
    CONFIG = Config(os.environ)
    if ":" in CONFIG.host:
        ThreadingHTTPServer.address_family = socket.AF_INET6
    server = ThreadingHTTPServer((CONFIG.host, CONFIG.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, on_sigterm)
    host, port = server.server_address[:2]
    print("authx dashboard on http://%s:%d/ (database: %s)"
          % (host if ":" not in host else "[%s]" % host, port, CONFIG.display_dsn),
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
