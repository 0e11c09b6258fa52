"""What every page of hpnet shares on the web: the checks before a request, one-line JSON errors.

Safety (:func:`guard`): a request whose Host header is not the bound address is refused (DNS
rebinding), as is a write from another origin (Origin or Sec-Fetch-Site) or one that is not JSON;
bodies are limited to :data:`MAX_BODY` bytes and parsed with a depth limit (:func:`body`); every
error is ``{"error": "one line"}`` with a 4xx (a 500 only for a bug, its traceback in the server's log).
"""
from __future__ import annotations

import ipaddress
import sys
import traceback

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import Forbidden, HTTPException, NotFound, UnsupportedMediaType

from ..errors import HPNetError
from ..io import parse_json
from ..results import json_ready

MAX_BODY = 1 << 20


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers the server answers: the bound address, and the loopback names when it is loopback."""
    names = {host}
    try:
        if ipaddress.ip_address(host).is_loopback:
            names |= {"127.0.0.1", "localhost", "[::1]"}
    except ValueError:
        if host == "localhost":
            names |= {"127.0.0.1", "[::1]"}
    out = {f"{name}:{port}" for name in names}
    return out | (names if port == 80 else set())


def guard(app: Flask) -> None:
    """The checks before every request, and every error as one JSON line."""

    @app.before_request
    def check() -> None:
        if request.routing_exception is not None:      # an unknown path or method: say so first
            raise request.routing_exception
        if request.host not in app.config["HPNET_HOSTS"]:
            raise Forbidden(f"Host {request.host[:60]!r} is not this server's address")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin is not None and origin not in {f"http://{h}" for h in app.config["HPNET_HOSTS"]}:
                raise Forbidden(f"writes from origin {origin[:60]!r} are refused")
            if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
                raise Forbidden("cross-site writes are refused")
            if request.mimetype != "application/json":
                raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if isinstance(e, NotFound) and e.description == NotFound.description:
            return error(f"no such page or API: {request.path[:80]}", 404)
        return error(e.description or e.name, e.code or 400)

    @app.errorhandler(HPNetError)
    def bad_request(e: HPNetError):
        return error(str(e), 400)

    @app.errorhandler(LookupError)
    def not_found(e: LookupError):
        return error(str(e.args[0]) if e.args else "not found", 404)

    @app.errorhandler(Exception)
    def internal(e: Exception):
        traceback.print_exc(file=sys.stderr)
        return error(f"internal error ({type(e).__name__}); see the server's log", 500)


def body():
    """The request's JSON body (depth-limited, no NaN or infinities); one line when it is not."""
    try:
        return parse_json(request.get_data(as_text=True))
    except HPNetError as e:
        raise HPNetError(f"the request body is {e}") from None


def json_response(obj) -> Response:
    """``obj`` as JSON (tensors, numpy values and non-finite numbers made plain)."""
    return jsonify(json_ready(obj))


def error(message: str, code: int) -> tuple[Response, int]:
    """``{"error": message}`` on one line of at most 300 characters."""
    return jsonify({"error": " ".join(str(message).split())[:300]}), code
