"""The Active Learning page in a real browser (headless Chromium, Selenium) against Airflow's real API
server, started with ``EmbeddedAirflow`` (scheduler, DAG processor, LocalExecutor, API server).

Logs in through the simple auth manager's login page, opens the page from Airflow's navigation, switches
active learning on (the dropdown appears: 100; the deploy question: only register), sets a training
parameter (a bad value refused first), trains through the training DAG, watches its progress and finds
the link to its live log, sees the training in the history, deploys the new model after its comparison,
and rolls the config back. Screenshots go to ``test-artifacts/ui-browser/``; with
``ACTIVE_LEARNING_UPDATE_SCREENSHOTS=1`` the projects list also goes to ``docs/ui/projects.png``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conftest import REPO, SAMPLE
from devstack.services import free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = REPO / "test-artifacts" / "ui-browser"
DOCS_SCREENSHOT = REPO / "docs" / "ui" / "projects.png"
PROJECT = "demo-news"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
]
TRAINING_TIMEOUT = 600  # a training is six Airflow tasks, each a new process: minutes on two busy cores


@dataclass
class Airflow:
    url: str
    password: str
    home: Path


def seed_projects(home: Path) -> None:
    """demo-news (90 completions and 30 tasks to annotate, active learning off), and two others for a fuller
    projects list."""
    from active_learning.backends import Backends
    from active_learning.exports import read_export

    backends = Backends()
    # MLflow's SQLite store made now: two of Airflow's processes using it first at once race to create it.
    backends.registry.client.search_experiments(max_results=1)
    config = (SAMPLE / "labeling_config.xml").read_text()
    tasks = [t for batch in ("completions_batch1.json", "completions_batch2.json") for t in read_export(SAMPLE / batch)[0]]
    backends.store.projects.create(PROJECT, config)
    backends.store.completions.import_tasks(PROJECT, tasks + read_export(SAMPLE / "tasks_to_annotate.json")[0])
    backends.store.projects.create("clinical-notes", config, active_learning=True, frequency=200, auto_deploy=True)
    backends.store.completions.import_tasks("clinical-notes", tasks[:64])
    backends.store.projects.create("support-tickets", config.replace('"ner_dl"', '"ner_dll"'), active_learning=True, frequency=50)
    backends.store.completions.import_tasks("support-tickets", tasks[:12])


@pytest.fixture
def airflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Airflow]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver "
                    "(.ci/run installs them)")
    pytest.importorskip("selenium", reason="needs selenium (requirements-dev.txt)")
    from devstack.embedded import EmbeddedAirflow

    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        monkeypatch.delenv(key)  # this test's own Airflow, not the test session's
    home = tmp_path / "home"
    monkeypatch.setenv("ACTIVE_LEARNING_HOME", str(home))
    seed_projects(home)
    embedded = EmbeddedAirflow(home=home, port=free_port(), poll_schedule="0 0 1 1 *")  # no poll during the test
    try:
        embedded.start(timeout=300)
        embedded.wait_for_dags({"active_learning_training", "active_learning_deploy"}, timeout=180)
        yield Airflow(embedded.url, embedded.admin_password(), home)
    finally:
        embedded.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path)}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_project_owner_drives_the_loop_from_the_active_learning_page(airflow: Airflow, browser: Any, tiny_base: Path) -> None:
    from active_learning.backends import Backends

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        drive(browser, airflow.url, airflow.password, Backends(), tiny_base)
    except BaseException:
        browser.save_screenshot(str(ARTIFACTS / "failure.png"))
        (ARTIFACTS / "failure.html").write_text(browser.page_source)
        raise


def drive(driver: Any, base: str, password: str, backends: Any, base_model: Path) -> None:
    """The whole walk through, as a person clicks it (also runnable against any running Airflow)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def wait(condition: Callable[[Any], Any], timeout: float = 60, what: str = "") -> Any:
        # The page re-renders after each change: an element found just before may be replaced; look again.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(driver, timeout, poll_frequency=0.5, ignored_exceptions=ignored).until(condition, message=what)

    def shot(name: str) -> None:
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def element(css: str) -> Any:
        return driver.find_element(By.CSS_SELECTOR, css)

    def click(css: str) -> None:
        """Click what ``css`` finds, finding it again if the page re-rendered it just before the click."""
        wait(lambda d: element(css).click() or True, what=f"{css} to be clicked")

    def notice() -> tuple[str | None, str]:
        """The notice's kind (None: hidden) and text, read at once: the page may replace it between two reads."""
        return tuple(driver.execute_script(
            "const n = document.getElementById('notice'); return [n.hidden ? null : n.dataset.kind, n.textContent];"))

    def notice_says(text: str, kind: str = "ok") -> Callable[[Any], bool]:
        stale = notice()  # an error shown before the action this waits for is not its answer

        def check(_: Any) -> bool:
            shown, said = notice()
            if shown == "error" and kind != "error" and (shown, said) != stale:
                raise AssertionError(f"the page reported an error: {said}")
            return shown == kind and text in said
        return check

    # Log in through the simple auth manager's login page.
    driver.get(f"{base}/auth/login?next=%2F")
    wait(lambda d: d.find_elements(By.NAME, "username"), what="the login form")
    driver.find_element(By.NAME, "username").send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(password)
    shot("01-login")
    click("button[type=submit]")
    wait(lambda d: "/auth/login" not in d.current_url, what="the login to finish")

    # The navigation entry opens the page inside Airflow's UI.
    nav = wait(lambda d: d.find_elements(By.CSS_SELECTOR, "a[href$='plugin/active-learning']"), what="the nav entry")
    nav[0].click()
    frame = wait(lambda d: d.find_elements(By.CSS_SELECTOR, "iframe[src*='active-learning']"), what="the page's iframe")[0]
    driver.switch_to.frame(frame)
    wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#projects tbody tr[data-name]")) == 3, what="the projects")
    broken = element("#projects tr[data-name='support-tickets'] .errors").text
    assert "MISC" in broken and "ner_dll" in broken
    shot("02-projects-in-airflow")
    driver.switch_to.default_content()

    # The project: switch active learning on; the dropdown appears; 100; the deploy question.
    driver.get(f"{base}/active-learning/#project={PROJECT}")
    wait(lambda d: d.find_elements(By.ID, "al-switch"), what="the project page")
    assert element("#trigger").text == "trainings start at the poll, or when an import tells Airflow"  # a store project
    assert not element("#frequency-wrap").is_displayed(), "the frequency dropdown shows while active learning is off"
    click("#al-switch")
    wait(lambda d: element("#frequency-wrap").is_displayed(), what="the frequency dropdown")
    Select(element("#frequency")).select_by_value("100")
    assert element("#enable-question").is_displayed()
    shot("03-switching-on")
    click("#enable-deploy-no")
    wait(notice_says("active learning on, every 100 new completions, register only"), what="the settings to be saved")
    wait(lambda d: element("#al-switch").is_selected() and element("#auto-deploy-line").is_displayed())
    settings = backends.store.projects.get(PROJECT)
    assert (settings.active_learning, settings.frequency, settings.auto_deploy) == (True, 100, False)
    assert backends.store.configs.revisions(PROJECT)[-1].author == "admin"

    # Training parameters: a bad value is refused with its message and nothing is saved; corrected, the
    # value is saved, shown as the project's, and reaches the training (its MLflow run, below). So is a base
    # model: one that is not installed is refused, saying so; a pipeline folder is the training's start.
    click("#training-params summary")
    element("[data-param='training.dropout']").send_keys("5")
    click("#save-params")
    wait(notice_says("training.dropout must be between 0 and 0.9, not 5", kind="error"), what="the bad value to be refused")
    assert backends.store.projects.get(PROJECT).training_params == {}
    element("[data-param='training.dropout']").clear()  # the page kept what was typed, to correct it
    element("[data-param='model.base']").send_keys("en_core_web_nothere")
    click("#save-params")
    wait(notice_says("no such package is installed on this worker", kind="error"), what="the missing base to be refused")
    assert backends.store.projects.get(PROJECT).training_params == {}
    element("[data-param='model.base']").clear()
    element("[data-param='model.base']").send_keys(str(base_model))
    element("[data-param='training.eval_frequency']").send_keys("10")
    Select(element("[data-param='queue.strategy']")).select_by_value("mnlp")
    shot("04-training-params")
    saved = notice_says("training.eval_frequency=10")
    click("#save-params")
    wait(saved, what="the parameters to be saved")
    wait(lambda d: element("[data-param='training.eval_frequency']").get_attribute("value") == "10", what="the saved value")
    assert backends.store.projects.get(PROJECT).training_params == {
        "training.eval_frequency": 10, "model.base": str(base_model), "queue.strategy": "mnlp"}

    # Notifications: the project's own recipients, every address checked as the CLI checks it.
    click("#notifications summary")
    element("#notify-emails").send_keys("owner@example.org, not an address")
    click("#save-notifications")
    wait(notice_says("'not an address' is not an e-mail address", kind="error"), what="the malformed address to be refused")
    assert backends.store.projects.get(PROJECT).notify_emails == ()
    element("#notify-emails").clear()  # the page kept what was typed, to correct it
    element("#notify-emails").send_keys("owner@example.org")
    saved = notice_says("e-mailed about trainings: owner@example.org")
    click("#save-notifications")
    wait(saved, what="the recipients to be saved")
    assert backends.store.projects.get(PROJECT).notify_emails == ("owner@example.org",)

    # Train now: a run of the training DAG; while it runs, its progress and a link to its live log; then
    # a row in the history that ends in success.
    click("#train-now")
    wait(notice_says("Training queued in Airflow"), what="the training to be queued")
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr[data-run]"), what="the run in the history")
    shot("05-training-queued")
    def progress_shown(_: Any) -> dict[str, str] | None:
        """The first running training's progress row, read at once (the page re-renders it every few seconds)."""
        if failed := driver.find_elements(By.CSS_SELECTOR, "#history tr[data-run] .badge.failed"):
            raise AssertionError(f"the training failed: {failed[0].find_element(By.XPATH, './ancestor::tr').text}")
        for row in driver.find_elements(By.CSS_SELECTOR, "#history tr[data-progress-for]"):
            if int(row.find_element(By.CSS_SELECTOR, ".live-step").text) > 0:
                return {"run": row.get_attribute("data-progress-for"), "text": row.text,
                        "log": row.find_element(By.CSS_SELECTOR, "a.live-log").get_attribute("href")}
        return None

    live = wait(progress_shown, timeout=TRAINING_TIMEOUT, what="a running training's progress")
    assert "best dev F1" in live["text"] and "elapsed" in live["text"] and "ends by step 60 (max_steps)" in live["text"]
    assert live["log"].endswith(f"/dags/active_learning_training/runs/{quote(live['run'], safe='')}/tasks/train"), live["log"]
    shot("06-training-progress")
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr[data-run] .badge.success"),
         timeout=TRAINING_TIMEOUT, what="the training to succeed")
    assert not driver.find_elements(By.CSS_SELECTOR, "#history tr[data-progress-for]"), "progress shown for a finished training"
    row = element("#history tbody tr[data-run]")
    assert "manual" in row.text and row.find_elements(By.LINK_TEXT, "Airflow run")
    assert row.find_element(By.CSS_SELECTOR, ".base-model").text.startswith("started from tiny_base 0.1.0 (sha256 ")
    [training] = backends.store.trainings.history(PROJECT)
    assert training.status == "success" and training.source == "manual" and training.completions_used == 90
    assert training.outcome and row.find_element(By.CSS_SELECTOR, ".badge.outcome").text == training.outcome
    assert backends.registry.client.get_run(training.mlflow_run_id).data.params["training_params.training.eval_frequency"] == "10"
    dev_f1 = backends.registry.client.get_metric_history(training.mlflow_run_id, "dev_f1")
    assert sorted(m.step for m in dev_f1) == list(range(0, 61, 10))  # every evaluation, as it trained
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#learning-curve circle"), what="the learning curve")
    shot("07-trained")

    # Deploy the new model: the dialog shows the comparison with the deployed model; confirm.
    revision = backends.store.configs.read(PROJECT).revision
    click(f"button[data-deploy='{training.model_name}']")
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "dialog[open] #comparison"), what="the comparison")
    assert training.model_name in element("#comparison").text
    shot("08-deploy-dialog")
    click("#dialog-ok")
    wait(notice_says(f"{training.model_name} (version 1) deployed"), what="the deploy")
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, f"#models tr[data-model='{training.model_name}'] .badge.on"))
    assert backends.store.projects.get(PROJECT).deployed_model == training.model_name
    assert backends.store.configs.read(PROJECT).revision == revision + 1
    assert backends.store.configs.revisions(PROJECT)[-1].author == "admin"

    # The projects list, inside Airflow, now shows the deployed model and the last training.
    driver.get(f"{base}/plugin/active-learning")
    driver.switch_to.frame(wait(lambda d: d.find_elements(By.CSS_SELECTOR, "iframe[src*='active-learning']"))[0])
    wait(lambda d: training.model_name in element(f"#projects tr[data-name='{PROJECT}']").text, what="the list")
    driver.switch_to.default_content()
    shot("09-projects-after-deploy")
    if os.environ.get("ACTIVE_LEARNING_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(DOCS_SCREENSHOT))

    # The queue: the deployed model pre-annotates the tasks awaiting annotation (run here: the poll that
    # announces a deploy made on the page is off in this test), scoring them by the project's strategy; the
    # page lists the next ten as `next` does, each with its text, the model's entities marked, the scorer
    # that ranked it and its confidence.
    from active_learning.preannotation.queue import next_tasks
    from active_learning.preannotation.run import preannotate

    report = preannotate(backends, PROJECT)
    assert (report.scorer, report.predicted) == ("mnlp", 30)
    driver.get(f"{base}/active-learning/#project={PROJECT}")
    wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue tbody tr")) == 10, what="the queue")
    assert element("#queue-strategy").text == "mnlp"
    expected = next_tasks(backends, PROJECT, n=10)
    rows = [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")] for row in driver.find_elements(By.CSS_SELECTOR, "#queue tbody tr")]
    assert [row[0] for row in rows] == [entry.task for entry in expected]
    assert [row[2] for row in rows] == ["mnlp"] * 10 and [row[3] for row in rows] == [f"{entry.score:.3f}" for entry in expected]
    predicted = backends.store.predictions.of_model(PROJECT, training.model_name, [entry.task for entry in expected])
    spans = sorted((item["value"]["text"], item["value"]["labels"][0]) for task in expected
                   for item in predicted[task.task][1] if item["value"]["end"] <= 160)
    marks = driver.execute_script("return [...document.querySelectorAll('#queue .task-text mark')]"
                                  ".map((m) => [m.firstChild.textContent, m.title]);")
    assert spans and sorted(map(tuple, marks)) == spans
    shot("10-queue")

    # Roll the config back to the revision before the deploy.
    driver.get(f"{base}/active-learning/#project={PROJECT}")
    click(f"button[data-rollback='{revision}']")
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "dialog[open] pre.diff"), what="the rollback's diff")
    shot("11-rollback-dialog")
    click("#dialog-ok")
    wait(notice_says(f"revision {revision} is live again"), what="the rollback")
    wait(lambda d: "rollback to revision" in element("#revisions tbody tr").text)
    shot("12-rolled-back")
    assert backends.store.configs.read(PROJECT).xml == backends.store.configs.revisions(PROJECT)[revision - 1].labeling_config
    assert backends.store.configs.revisions(PROJECT)[-1].author == "admin"
