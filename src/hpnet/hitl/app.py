"""The page of ``hpnet serve``: one HTML page and a JSON API over a :class:`~.workbench.Workbench`.

    GET  /                          the page (static/index.html; its script and style under /static/)
    GET  /api/model                 grid (Fig. 5), weights, accuracies, semantic order, top channels, and the
                                    operations (name, words, fields, the networks each applies to)
    GET  /api/attribute/<name>      an attribute's top channels and their mask maps over sample images
    GET  /api/channel/<c>           a channel's most correlated partners (Fig. 6) and its grid column
    GET  /api/correlation           the C x C channel correlation
    GET  /api/image/<i>.png         cached evaluation image i
    POST /api/predict               the cards and the formula's prediction of a perturbation
    POST /api/apply                 cards, prediction and measured change of a perturbation, and the flipped images
    POST /api/trial                 start a trial (random or own perturbation, network or blind)
    POST /api/trial/<id>/commit     commit a prediction; the answer reveals the measurement
    GET  /api/score                 the person's, the formula's and the no-change score over the logged trials
    POST /api/export                the perturbation as a new run folder under RUN/hitl/exports/

A perturbation is ``{"network": "demo (attention)", "operation": "scale", "channels": [3, 7], "alpha":
0.5}`` (any registered operation and its keys), a list ``{"network", "operations": [{"operation",
...}, ...]}``, or the legacy ``{"network", "off": [3, 7] | {"semantic_first": P} | {"top_of":
"<attribute>", "count": N}, "tone": {"all": {"n": 2, "beta": 0.2}, "<attribute>": {...}}}``; see
:mod:`.perturbation`.

Safety: the server binds 127.0.0.1 unless told otherwise; a request whose Host header is not the
bound address is refused (DNS rebinding), as is a write from another origin (Origin or
Sec-Fetch-Site) or one that is not JSON; no route reads a file outside the package's page and the
run's own trial log; every bad request gets a 4xx with ``{"error": "one line"}``.
"""
from __future__ import annotations

import ipaddress
import re
import sys
import traceback
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import Conflict, Forbidden, HTTPException, NotFound, UnsupportedMediaType

from ..errors import HPNetError
from ..folders import staged
from ..io import parse_json
from ..predictability.human import HITL_DIR, LOG_FILE
from ..results import json_ready
from .trials import LogUnwritable, TrialDesk
from .workbench import Workbench

STATIC = Path(__file__).with_name("static")
EXPORTS = "exports"
EXPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
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


def create_app(bench: Workbench, host: str = "127.0.0.1", port: int = 8000, log: str | Path | None = None,
               n_boot: int = 1000) -> Flask:
    """The Flask app serving ``bench``; trials go to ``log`` (default RUN/hitl/trials.jsonl)."""
    run = bench.main.run
    if log is None and run is None:
        raise HPNetError("a workbench not opened from a run folder needs a trial log path")
    log = Path(log) if log is not None else run.path / HITL_DIR / LOG_FILE
    desk = TrialDesk(bench, log, n_boot=n_boot)
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, HPNET_HOSTS=allowed_hosts(host, port))
    app.json.sort_keys = False          # a card's facts and a perturbation's keys in their own order
    app.extensions["hpnet"] = {"bench": bench, "desk": desk}
    _guard(app)
    _read_routes(app, bench)
    _write_routes(app, bench, desk, run)
    return app


def _guard(app: Flask) -> None:
    """The checks before every request, and every error as one JSON line."""

    @app.before_request
    def guard() -> None:
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
            return _error(f"no such page or API: {request.path[:80]}", 404)
        return _error(e.description or e.name, e.code or 400)

    @app.errorhandler(HPNetError)
    def bad_request(e: HPNetError):
        return _error(str(e), 400)

    @app.errorhandler(LookupError)
    def not_found(e: LookupError):
        return _error(str(e.args[0]) if e.args else "not found", 404)

    @app.errorhandler(LogUnwritable)
    def unwritable(e: LogUnwritable):
        traceback.print_exc(file=sys.stderr)
        return _error(str(e), 503)

    @app.errorhandler(Exception)
    def internal(e: Exception):
        traceback.print_exc(file=sys.stderr)
        return _error(f"internal error ({type(e).__name__}); see the server's log", 500)


def _read_routes(app: Flask, bench: Workbench) -> None:
    @app.get("/")
    def page():
        response = send_from_directory(STATIC, "index.html")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/model")
    def model():
        return _json(bench.overview())

    @app.get("/api/attribute/<name>")
    def attribute(name: str):
        return _json(bench.attribute_view(name))

    @app.get("/api/channel/<int:c>")
    def channel(c: int):
        return _json(bench.channel_view(c))

    @app.get("/api/correlation")
    def correlation():
        return _json({"matrix": [[round(v, 4) for v in row] for row in bench.correlation.tolist()]})

    @app.get("/api/image/<int:i>.png")
    def image(i: int):
        if not 0 <= i < bench.images.shape[0]:
            raise NotFound(f"no image {i} (the page holds {bench.images.shape[0]})")
        return Response(bench.image_png(i), mimetype="image/png")


def _write_routes(app: Flask, bench: Workbench, desk: TrialDesk, run) -> None:
    @app.post("/api/predict")
    def predict():
        p = bench.perturbation(_body())
        return _json({"perturbation": p.to_json(), "cards": bench.cards_json(p), "predicted": bench.predicted(p)})

    @app.post("/api/apply")
    def apply():
        return _json(bench.apply(bench.perturbation(_body())))

    @app.post("/api/trial")
    def trial():
        return _json(desk.start(_body()))

    @app.post("/api/trial/<trial_id>/commit")
    def commit(trial_id: str):
        return _json(desk.commit(trial_id, _body()))

    @app.post("/api/export")
    def export():
        body = _body()
        if not isinstance(body, dict) or set(body) - {"perturbation", "name"}:
            raise HPNetError("an export must be {\"perturbation\": {...}, \"name\": \"<folder name>\"}")
        name = body.get("name")
        if not isinstance(name, str) or not EXPORT_NAME.fullmatch(name) or ".." in name:
            raise HPNetError("name must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
        if run is None:
            raise HPNetError("this workbench was not opened from a run folder: nothing to export to")
        p = bench.perturbation(body.get("perturbation") or {})
        out = run.path / HITL_DIR / EXPORTS / name
        if out.exists():
            raise Conflict(f"{HITL_DIR}/{EXPORTS}/{name} exists already; choose another name")
        channels = _export_whole(bench, p, out)
        return _json({"path": f"{HITL_DIR}/{EXPORTS}/{name}", "channels": channels, "perturbation": p.to_json()})

    @app.get("/api/score")
    def score():
        return _json(desk.score())


def _export_whole(bench: Workbench, p, out: Path) -> int:
    """Export into a folder of its own and rename it into place (:func:`hpnet.folders.staged`): a
    reader never sees half an export, and of two exports racing for one name exactly one lands (the
    other gets a 409)."""
    def taken(out: Path) -> Conflict:
        return Conflict(f"{out.parent.parent.name}/{out.parent.name}/{out.name} exists already; choose another name")
    with staged(out, taken) as staging:
        _, channels = bench.export(p, staging)
    return channels


def _body():
    try:
        return parse_json(request.get_data(as_text=True))
    except HPNetError as e:
        raise HPNetError(f"the request body is {e}") from None


def _json(obj) -> Response:
    return jsonify(json_ready(obj))


def _error(message: str, code: int) -> tuple[Response, int]:
    return jsonify({"error": " ".join(str(message).split())[:300]}), code
