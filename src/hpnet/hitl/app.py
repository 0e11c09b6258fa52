"""The page of ``hpnet serve``: one HTML page and a JSON API over a :class:`~.workbench.Workbench`.

    GET  /                          the page (static/index.html; its script and style under /static/)
    GET  /api/model                 grid (Fig. 5), weights, accuracies, semantic order, top channels, and the
                                    operations (name, words, fields, the networks each applies to)
    GET  /api/attribute/<name>      an attribute's top channels and their mask maps over sample images
    GET  /api/channel/<c>           a channel's most correlated partners (Fig. 6) and its grid column
    GET  /api/correlation           the C x C channel correlation
    GET  /api/image/<i>.png         cached evaluation image i
    GET  /api/channel/<c>/fires/<i>.png   image i with where channel c fires (its activation, and the region
                                    dissection names its part by outlined)
    GET  /api/channel/<c>/mask/<i>.png    image i with channel c's mask for ?attribute=<name> (default: the
                                    mean over the attributes)
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

import re
import sys
import traceback
from pathlib import Path

from flask import Flask, Response, request, send_from_directory
from werkzeug.exceptions import Conflict, NotFound

from ..errors import HPNetError
from ..folders import staged
from ..predictability.human import HITL_DIR, LOG_FILE
from .trials import LogUnwritable, TrialDesk
from .web import MAX_BODY, allowed_hosts, body, error, guard, json_response
from .workbench import Workbench

STATIC = Path(__file__).with_name("static")
EXPORTS = "exports"
EXPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


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
    guard(app)

    @app.errorhandler(LogUnwritable)
    def unwritable(e: LogUnwritable):
        traceback.print_exc(file=sys.stderr)
        return error(str(e), 503)
    _read_routes(app, bench)
    _write_routes(app, bench, desk, run)
    return app


def _read_routes(app: Flask, bench: Workbench) -> None:
    @app.get("/")
    def page():
        response = send_from_directory(STATIC, "index.html")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/model")
    def model():
        return json_response(bench.overview())

    @app.get("/api/attribute/<name>")
    def attribute(name: str):
        return json_response(bench.attribute_view(name))

    @app.get("/api/channel/<int:c>")
    def channel(c: int):
        return json_response(bench.channel_view(c))

    @app.get("/api/correlation")
    def correlation():
        return json_response({"matrix": [[round(v, 4) for v in row] for row in bench.correlation.tolist()]})

    @app.get("/api/image/<int:i>.png")
    def image(i: int):
        if not 0 <= i < bench.images.shape[0]:
            raise NotFound(f"no image {i} (the page holds {bench.images.shape[0]})")
        return Response(bench.image_png(i), mimetype="image/png")

    @app.get("/api/channel/<int:c>/<any(fires, mask):show>/<int:i>.png")
    def channel_map(c: int, show: str, i: int):
        if not 0 <= i < bench.images.shape[0]:
            raise NotFound(f"no image {i} (the page holds {bench.images.shape[0]})")
        unknown = set(request.args) - {"attribute"}
        if unknown:
            raise HPNetError(f"unknown query parameter {sorted(unknown)[0][:40]!r}: only ?attribute=<name>")
        return Response(bench.channel_map_png(c, i, show, request.args.get("attribute")), mimetype="image/png")


def _write_routes(app: Flask, bench: Workbench, desk: TrialDesk, run) -> None:
    @app.post("/api/predict")
    def predict():
        p = bench.perturbation(body())
        return json_response({"perturbation": p.to_json(), "cards": bench.cards_json(p),
                              "predicted": bench.predicted(p)})

    @app.post("/api/apply")
    def apply():
        return json_response(bench.apply(bench.perturbation(body())))

    @app.post("/api/trial")
    def trial():
        return json_response(desk.start(body()))

    @app.post("/api/trial/<trial_id>/commit")
    def commit(trial_id: str):
        return json_response(desk.commit(trial_id, body()))

    @app.post("/api/export")
    def export():
        spec = body()
        if not isinstance(spec, dict) or set(spec) - {"perturbation", "name"}:
            raise HPNetError("an export must be {\"perturbation\": {...}, \"name\": \"<folder name>\"}")
        name = spec.get("name")
        if not isinstance(name, str) or not EXPORT_NAME.fullmatch(name) or ".." in name:
            raise HPNetError("name must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
        if run is None:
            raise HPNetError("this workbench was not opened from a run folder: nothing to export to")
        p = bench.perturbation(spec.get("perturbation") or {})
        out = run.path / HITL_DIR / EXPORTS / name
        if out.exists():
            raise Conflict(f"{HITL_DIR}/{EXPORTS}/{name} exists already; choose another name")
        channels = _export_whole(bench, p, out)
        return json_response({"path": f"{HITL_DIR}/{EXPORTS}/{name}", "channels": channels,
                              "perturbation": p.to_json()})

    @app.get("/api/score")
    def score():
        return json_response(desk.score())


def _export_whole(bench: Workbench, p, out: Path) -> int:
    """Export into a folder of its own and rename it into place (:func:`hpnet.folders.staged`): a
    reader never sees half an export, and of two exports racing for one name exactly one lands (the
    other gets a 409)."""
    def taken(out: Path) -> Conflict:
        return Conflict(f"{out.parent.parent.name}/{out.parent.name}/{out.name} exists already; choose another name")
    with staged(out, taken) as staging:
        _, channels = bench.export(p, staging)
    return channels
