"""The study's page in a real browser: three participants at once, both phases and the last question.

Chromium is the system's (/usr/bin/chromium, never downloaded), driven by Playwright; the module is
skipped when either is missing. The server is the study's (waitress) on a free loopback port.
"""
import shutil
import sqlite3
import threading

import pytest

from browserhelp import TIMEOUT_MS, chromium, expect
from hpnet.commands import train_run
from hpnet.data import DataSpec
from hpnet.study import Study, StudySettings, create_study
from hpnet.train import TrainConfig

NAMES = ["Smiling", "Eyeglasses", "Wearing_Hat"]
TINY = {"backbone": "strided", "widths": (4, 6, 8)}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny study of two networks served by waitress on a free port: (base URL, study)."""
    from waitress import create_server

    from hpnet.study.app import create_study_app
    root = tmp_path_factory.mktemp("study-browser")
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=128, attributes=NAMES)
    train_run(root / "run", spec, dict(TINY), TrainConfig(epochs=1, batch_size=32), progress=False)
    train_run(root / "run" / "plain", spec, {**TINY, "head": "linear"}, TrainConfig(epochs=1, batch_size=32),
              progress=False)
    create_study(root / "study", StudySettings(networks=[str(root / "run"), str(root / "run" / "plain")], learn=1,
                                               test=2, checks=1, images=32, attributes=2), progress=False)
    study = Study(root / "study")
    app = create_study_app(study, "admin-token-for-the-browser-test", port=0)
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    app.config["HPNET_HOSTS"] |= {f"127.0.0.1:{server.effective_port}", f"localhost:{server.effective_port}"}
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}", study
    server.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


class Participant:
    """One person's browser tab, stepped one action at a time (so three go through at once)."""

    def __init__(self, browser, url: str, number: int):
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors, self.number, self.items, self.finished = [], number, [], False
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)

    def step(self) -> None:
        page = self.page
        if page.get_by_test_id("consent").is_visible():
            assert "neural network" in page.get_by_test_id("info-sheet").inner_text()
            page.get_by_test_id("agree").click()
            expect(page.get_by_test_id("item")).to_be_visible()
        elif page.get_by_test_id("feedback").is_visible():
            assert page.locator("#outcome tr").count() == 3                  # a header and the 2 attributes
            page.get_by_test_id("next").click()
            page.wait_for_function("document.getElementById('feedback').hidden")
        elif page.get_by_test_id("item").is_visible():
            self.answer()
        elif page.get_by_test_id("rating").is_visible():
            page.get_by_test_id("rate-A-5").click()
            page.get_by_test_id(f"rate-B-{2 + self.number}").click()
            page.get_by_test_id("rate").click()
            expect(page.get_by_test_id("done")).to_be_visible()
            self.finished = True

    def answer(self) -> None:
        page = self.page
        progress = page.get_by_test_id("progress").inner_text()
        self.items.append(progress)
        phase = page.get_by_test_id("phase").inner_text()
        assert page.get_by_test_id("feedback").is_hidden()                 # nothing measured shown before the commit
        if page.get_by_test_id("roles").is_visible():                       # where the changed channels fire
            assert page.get_by_test_id("roles").inner_text().startswith("Where th")
        assert page.get_by_test_id("formula").is_visible() == (self.number % 2 == 0)   # conditions alternate
        rows = page.locator("#predictions tr")
        commit = page.get_by_test_id("commit")
        for i in range(rows.count()):
            expect(commit).to_be_disabled()
            buttons = rows.nth(i).locator("button")
            buttons.nth((self.number + i) % 7).click()
        page.get_by_test_id("confidence").fill(str(30 + 20 * self.number))
        commit.click()
        if phase.startswith("Learning"):
            expect(page.get_by_test_id("feedback")).to_be_visible()
        else:
            page.wait_for_function(f"document.getElementById('progress').textContent !== {progress!r}")


def test_three_participants_at_once_through_both_phases_and_the_question(browser, served, tmp_path):
    url, study = served
    tokens = study.invite(3)
    people = [Participant(browser, f"{url}/p/{token}", n) for n, token in enumerate(tokens)]
    for _ in range(200):
        if all(p.finished for p in people):
            break
        for person in people:
            if not person.finished:
                person.step()
    assert all(p.finished for p in people), [p.items for p in people]
    people[0].page.screenshot(path=str(tmp_path / "study-done.png"))
    for person in people:
        assert len(person.items) == len(study.items) and not person.errors, person.errors
        person.context.close()
    conn = sqlite3.connect(study.db)
    assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 3 * len(study.items)
    assert conn.execute("SELECT COUNT(DISTINCT participant) FROM answers").fetchone()[0] == 3
    assert sorted(conn.execute("SELECT value FROM ratings WHERE network = 'B'").fetchall()) == [(2,), (3,), (4,)]
    confidences = {round(c, 2) for (c,) in conn.execute("SELECT confidence FROM answers")}
    assert confidences == {0.3, 0.5, 0.7}
    conn.close()
    shutil.rmtree(tmp_path, ignore_errors=True)
