"""The reviewer web page in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven by
selenium): sign in as a reviewer with a token from the IdP, see a pending request, approve it with a reason;
the store shows it approved by that reviewer. Then the requester signs in and cannot decide their own request."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack.processes import ManagedProcess
from gateway.enforcement.decisions import Resource
from gateway.store.approvals_sqlite import SqliteApprovalStore
from tests.approvals.conftest import make_request
from tests.approvals.helpers import AdminHandle, start_admin

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def admin(
    idp: ManagedProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AdminHandle, Path]]:
    workdir = tmp_path_factory.mktemp("page")
    config = {
        "server": {"drain_timeout": 5},
        "identity": {"oidc": {"issuer": idp.extra["issuer"], "audience": "streamgate"}},
        "admin": {"store": {"path": str(workdir / "approvals.db")}},
    }
    handle = start_admin(config, workdir)
    try:
        yield handle, workdir / "approvals.db"
    finally:
        assert handle.stop() == 0, handle.log_text()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("headless browser test needs Debian packages chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "driver.log")),
        options=options,
    )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_reviewer_approves_a_pending_request_in_chromium(
    admin: tuple[AdminHandle, Path], browser: Any, token: Callable[[str], str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    handle, db = admin
    store = SqliteApprovalStore(db)
    try:
        record = make_request(
            store,
            "alice",
            resource=Resource.topic("customers.pii.accounts"),
            client_id="fraud-notebook;justification=INC-4711 <b>refund</b> check",
        )
        wait = WebDriverWait(browser, 15)
        browser.get(handle.url + "/")

        # a wrong token is refused with a message, and the page stays on the sign-in step
        wait.until(ec.visibility_of_element_located((By.ID, "token-input"))).send_keys("not-a-token")
        browser.find_element(By.ID, "login-button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "flash"), "invalid token (malformed)"))
        assert browser.find_element(By.ID, "login").is_displayed()

        browser.find_element(By.ID, "token-input").send_keys(token("carol"))
        browser.find_element(By.ID, "login-button").click()
        wait.until(
            ec.text_to_be_present_in_element((By.ID, "whoami"), "Signed in as carol (security-oncall)")
        )
        row = wait.until(
            ec.visibility_of_element_located(
                (By.CSS_SELECTOR, f'#pending-table tbody tr[data-id="{record.id}"]')
            )
        )
        assert "alice <alice@example.com>" in row.text and "topic customers.pii.accounts" in row.text
        # requester-controlled text is shown as text, never as markup
        assert "INC-4711 <b>refund</b> check" in row.text
        assert not browser.find_elements(By.CSS_SELECTOR, "#pending-table b")

        row.click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "details-id"), record.id))
        approve = wait.until(ec.visibility_of_element_located((By.ID, "approve-button")))
        assert browser.find_element(By.ID, "deny-button").is_displayed()
        approve.click()  # without a reason: refused by the page itself
        wait.until(ec.text_to_be_present_in_element((By.ID, "flash"), "Please give a reason"))
        assert store.get(record.id).status == "pending"  # type: ignore[union-attr]

        browser.find_element(By.ID, "reason-input").send_keys("INC-4711 confirmed with the fraud team")
        approve.click()
        wait.until(
            ec.text_to_be_present_in_element((By.ID, "flash"), f"Request {record.id} is now approved.")
        )
        browser.save_screenshot(str(tmp_path / "reviewer-page.png"))

        stored = store.get(record.id)
        assert stored is not None and stored.status == "approved" and stored.decided_by == "carol"
        assert stored.reason == "INC-4711 confirmed with the fraud team"
        decided = wait.until(
            ec.visibility_of_element_located(
                (By.CSS_SELECTOR, f'#decided-table tbody tr[data-id="{record.id}"]')
            )
        )
        assert "approved" in decided.text and "carol" in decided.text
        assert not browser.find_elements(By.CSS_SELECTOR, f'#pending-table tbody tr[data-id="{record.id}"]')

        # the requester sees their own pending request but cannot decide it
        own = make_request(store, "alice", resource=Resource.topic("customers.pii.cards"))
        browser.find_element(By.ID, "logout-button").click()
        wait.until(ec.visibility_of_element_located((By.ID, "token-input"))).send_keys(token("alice"))
        browser.find_element(By.ID, "login-button").click()
        wait.until(
            ec.visibility_of_element_located(
                (By.CSS_SELECTOR, f'#pending-table tbody tr[data-id="{own.id}"]')
            )
        ).click()
        wait.until(
            ec.text_to_be_present_in_element((By.ID, "details-note"), "another reviewer has to decide")
        )
        assert not browser.find_element(By.ID, "approve-button").is_displayed()
        assert store.get(own.id).status == "pending"  # type: ignore[union-attr]
    finally:
        store.close()
