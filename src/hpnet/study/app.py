"""The study's web server: the participants' page and API, and the admin's score and answers.

    GET  /                              the study's landing page (self-enrolment, when the protocol allows it)
    POST /api/join                      self-enrol: a new participant's link
    GET  /p/TOKEN/                      the participant's page (static/study.html)
    GET  /p/TOKEN/api/state             consent given, items answered of how many, the information sheet
    POST /p/TOKEN/api/consent           ``{}``, once before the first item
    GET  /p/TOKEN/api/item              the current item (card; the formula in the "formula" condition),
                                        or ``{"done": true}``
    POST /p/TOKEN/api/answer            ``{"item", "predictions": {attribute: {"direction", "size"}},
                                        "confidence"}``; a learning item's answer reveals its measured change
    POST /p/TOKEN/api/rating            ``{"A": 1..7, ...}`` after the last item
    GET  /admin/ADMIN/api/score         :func:`~.score.score_study` as JSON
    GET  /admin/ADMIN/api/answers.csv   one row per (answer, attribute)

It runs on waitress (``hpnet study serve``), a production WSGI server, many participants at once;
each request opens its own database connection. The safety of the page of ``hpnet serve`` holds
(:func:`hpnet.hitl.web.guard`: Host and Origin checks, JSON writes only, one-line errors); a
participant reaches only their own items and answers; the admin token is compared in constant time.
"""
from __future__ import annotations

import hmac
from pathlib import Path

from flask import Flask, Response, request, send_from_directory
from werkzeug.exceptions import Forbidden

from ..errors import HPNetError
from ..hitl.web import allowed_hosts, body, error, guard, json_response
from .score import answers_csv, score_study
from .session import Expired, Refused, Study, Unknown

STATIC = Path(__file__).with_name("static")
MAX_BODY = 64 * 1024


def create_study_app(study: Study, admin_token: str, host: str = "127.0.0.1", port: int = 8000,
                     allow_hosts: tuple[str, ...] = ()) -> Flask:
    """The Flask app of ``study``; ``admin_token`` opens the admin routes."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, HPNET_HOSTS=hosts(host, port, allow_hosts))
    app.json.sort_keys = False
    app.extensions["hpnet"] = {"study": study}
    guard(app)

    @app.errorhandler(Unknown)
    def unknown(e: Unknown):
        return error(str(e), 404)

    @app.errorhandler(Expired)
    def expired(e: Expired):
        return error(str(e), 403)

    @app.errorhandler(Refused)
    def refused(e: Refused):
        return error(str(e), 409)

    _participant_routes(app, study)
    _admin_routes(app, study, admin_token)
    return app


def hosts(host: str, port: int, allow_hosts: tuple[str, ...]) -> set[str]:
    """The Host headers answered: the bound address (and loopback names) and each allowed name."""
    out = allowed_hosts(host, port)
    for name in allow_hosts:
        out |= {name, f"{name}:{port}"}
    return out


def _page(name: str) -> Response:
    response = send_from_directory(STATIC, name)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"          # the token is in the path
    return response


def _participant_routes(app: Flask, study: Study) -> None:
    @app.get("/")
    def landing():
        return _page("join.html")

    @app.post("/api/join")
    def join():
        body()
        token = study.enrol()
        return json_response({"url": f"/p/{token}/", "token": token})

    @app.get("/p/<token>/")
    def page(token: str):
        study.state(token)                                     # 404 for a link that is no participant's
        return _page("study.html")

    @app.get("/p/<token>/api/state")
    def state(token: str):
        return json_response(study.state(token))

    @app.post("/p/<token>/api/consent")
    def consent(token: str):
        return json_response(study.consent(token, body()))

    @app.get("/p/<token>/api/item")
    def item(token: str):
        return json_response(study.current(token))

    @app.post("/p/<token>/api/answer")
    def answer(token: str):
        return json_response(study.answer(token, body()))

    @app.post("/p/<token>/api/rating")
    def rating(token: str):
        return json_response(study.rate(token, body()))


def _admin_routes(app: Flask, study: Study, admin_token: str) -> None:
    def check(token: str) -> None:
        if not hmac.compare_digest(token.encode(), admin_token.encode()):
            raise Forbidden("not the admin link of this server (printed when it started)")

    @app.get("/admin/<token>/api/score")
    def score(token: str):
        check(token)
        n_boot = request.args.get("boot", "1000")
        if not n_boot.isdigit() or not 10 <= int(n_boot) <= 100_000:
            raise HPNetError("boot must be an integer in 10..100000")
        return json_response(score_study(study, n_boot=int(n_boot)).to_json())

    @app.get("/admin/<token>/api/answers.csv")
    def answers(token: str):
        check(token)
        return Response(answers_csv(study), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=answers.csv"})
