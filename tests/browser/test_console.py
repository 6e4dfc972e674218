"""The web console in a real browser (headless Chromium), against a real salara on the real test Asterisk.

Incoming calls enter an extension of this module's own context
(:data:`CONTEXT`, added with AMI ``DialplanExtensionAdd``) whose AGI names
this test's salara, so no other test's routing changes where they go; they
are routed by a real HTTP CRM (:class:`tests.crm.FakeCrm`) to the simulated
extension 9002 (answers, waits 5 s, hangs up). Each view's screenshot goes
to ``build/screenshots/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from salara.api.security.tokens import hash_token
from testpbx import pbx
from tests import dialplan as shared_dialplan
from tests.browser.conftest import keep_curated, requested_urls, screenshot
from tests.conftest import EXAMPLE_CONFIG, REPO, SalaraFactory, SalaraProcess
from tests.crm import FakeCrm

CONTEXT = "salara-console-test"
INBOUND = "7200"
ADMIN_TOKEN = "console-admin-token-0123456789abcdefghijklmnop"
MONITOR_TOKEN = "console-monitor-token-0123456789abcdefghijklm"
XSS_NAME = "<img src=x onerror=alert(1)>"
CALLERS = {
    "5553001": "9002",  # a plain routed call
    "5553002": "9002",  # its caller name is XSS_NAME
    "5553003": "8002",  # 8002 never registers: Unavailable, refused; the table's 9002 wins
}
WAIT_S = 15


def tokens() -> str:
    return (
        f"\n[token console-admin]\nhash = {hash_token(ADMIN_TOKEN)}\nrights = call,message,state,admin\n"
        f"\n[token console-monitor]\nhash = {hash_token(MONITOR_TOKEN)}\nrights = state\n"
    )


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    server = FakeCrm(routes=dict(CALLERS)).start()
    yield server
    server.stop()


def add_extension(exten: str, priority: str, application: str, data: str = "") -> None:
    shared_dialplan.add_extension(CONTEXT, exten, priority, application, data)


@pytest.fixture
def salara(salara_factory: SalaraFactory, crm: FakeCrm) -> Iterator[SalaraProcess]:
    text = EXAMPLE_CONFIG.read_text()
    text = text.replace(
        "dest_url=http://127.0.0.1:3000/call_center/incoming_call/check_is_org_only?phone=",
        f"dest_url={crm.url}/lookup?phone=",
    )
    text = text.replace("dest_url_event=http://127.0.0.1:3000/post", f"dest_url_event={crm.url}/events")
    text = text.replace("5551001:8002\n5551002:9002\n", "5553003:9002\n")
    process = salara_factory(text + tokens(), start=False)
    process.headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    process.start()
    add_extension(INBOUND, "1", "AGI", f"agi://{process.env['SALARA_AGI_LISTEN']}/route?context=phones")
    add_extension(INBOUND, "2", "Hangup")
    yield process
    shared_dialplan.remove_extensions(CONTEXT, INBOUND)


def incoming_call(caller: str, name: str = "Customer") -> str:
    """An incoming call from ``caller`` (``name``) into the routing extension; its call id (Linkedid) is chosen here."""
    call_id = f"salara-console-{caller}-{time.time_ns()}"
    reply = pbx.ami_command(
        "Action: Originate",
        f"Channel: Local/{INBOUND}@{CONTEXT}",
        f'CallerID: "{name}" <{caller}>',
        "Application: Wait",
        "Data: 20",
        f"ChannelId: {call_id}",
        "Async: true",
    )
    assert "Success" in reply, reply
    return call_id


def until(driver: webdriver.Chrome, what: str, check: object, timeout_s: float = WAIT_S) -> object:
    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(check, f"timed out waiting for {what}")


def sign_in(driver: webdriver.Chrome, salara: SalaraProcess, token: str = ADMIN_TOKEN) -> None:
    driver.get(f"{salara.url}/ui")
    field = until(
        driver,
        "the sign-in form",
        lambda d: d.find_element(By.ID, "token").is_displayed() and d.find_element(By.ID, "token"),
    )
    field.send_keys(token)  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()
    until(driver, "the console after sign-in", lambda d: d.find_element(By.ID, "nav").is_displayed())


def open_view(driver: webdriver.Chrome, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#nav a[data-view="{name}"]').click()
    until(driver, f"the {name} view", lambda d: d.find_element(By.ID, f"view-{name}").is_displayed())


ROW_SCRIPT = """
const row = document.querySelector(`#${arguments[0]} tbody tr[data-call-id="${arguments[1]}"]`);
if (!row) return null;
const out = {text: row.textContent, buttons: [...row.querySelectorAll("button")].map(b => b.dataset.action)};
for (const cell of row.querySelectorAll("td[class]")) out[cell.classList[cell.classList.length - 1]] = cell.textContent;
out.candidates = [...row.querySelectorAll("ul.candidates li")]
  .map(li => [li.dataset.exten, li.dataset.verdict, li.textContent]);
return out;
"""


def row(driver: webdriver.Chrome, table: str, call_id: str) -> dict[str, Any] | None:
    """The cells of a call's row in one read (the views redraw their rows): by class, or None without the row."""
    found: dict[str, Any] | None = driver.execute_script(ROW_SCRIPT, table, call_id)
    return found


def only_this_server(urls: list[str], salara: SalaraProcess) -> list[str]:
    """The URLs that went anywhere but this salara (data: URLs are in the page, blob: ones made by it)."""
    here = urlsplit(salara.url).netloc
    return [url for url in urls if not url.startswith("data:") and urlsplit(url.removeprefix("blob:")).netloc != here]


def test_without_a_session_only_the_sign_in_shows(browser: webdriver.Chrome, salara: SalaraProcess) -> None:
    browser.get(f"{salara.url}/ui")
    until(browser, "the sign-in form", lambda d: d.find_element(By.ID, "sign-in").is_displayed())
    assert not browser.find_element(By.ID, "nav").is_displayed()
    assert [v.get_attribute("id") for v in browser.find_elements(By.CSS_SELECTOR, ".view") if v.is_displayed()] == []
    screenshot(browser, "sign-in")
    wrong = browser.find_element(By.ID, "token")
    wrong.send_keys("not-a-token")
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()
    until(browser, "the refusal", lambda d: d.find_element(By.ID, "sign-in-error").text)
    assert browser.find_element(By.ID, "sign-in-error").text == "this token is not configured"
    assert not browser.find_element(By.ID, "nav").is_displayed()


def test_a_call_shows_live_without_reload_then_ends_into_recent_calls(
    browser: webdriver.Chrome, salara: SalaraProcess
) -> None:
    sign_in(browser, salara)
    open_view(browser, "live")
    until(browser, "the live stream", lambda d: d.find_element(By.ID, "live-status").text == "live")
    call_id = incoming_call("5553001")
    live = until(browser, "the call under live calls", lambda d: row(d, "live-table", call_id))
    assert live["from"] == "5553001" and live["buttons"] == ["hangup", "transfer"]  # type: ignore[index]
    until(
        browser,
        "the call answered at 9002",
        lambda d: (row(d, "live-table", call_id) or {}).get("text", "").find("up") >= 0,
    )
    keep_curated(screenshot(browser, "live-calls"), REPO / "docs" / "console.png")
    until(browser, "the call gone from live calls", lambda d: row(d, "live-table", call_id) is None, timeout_s=30)
    open_view(browser, "recent")
    ended = until(browser, "the call under recent calls", lambda d: row(d, "recent-table", call_id))
    assert (ended["from"], ended["outcome"]) == ("5553001", "answered")  # type: ignore[index]
    # The filter keeps the calls of a number.
    browser.find_element(By.ID, "recent-number").send_keys("5553001")
    browser.find_element(By.CSS_SELECTOR, "#recent-filter button").click()
    until(
        browser,
        "the filtered list",
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('#recent-table tbody tr')]"
            ".every(r => r.textContent.includes('5553001'))"
        ),
    )
    screenshot(browser, "recent-calls")


def test_a_routing_decision_shows_its_candidates(browser: webdriver.Chrome, salara: SalaraProcess) -> None:
    sign_in(browser, salara)
    open_view(browser, "routing")
    call_id = incoming_call("5553003")
    decision = until(browser, "the decision", lambda d: row(d, "routing-table", call_id), timeout_s=20)
    candidates = decision["candidates"]  # type: ignore[index]
    assert [(exten, verdict) for exten, verdict, _ in candidates] == [
        ("8002", "refused"),
        ("9002", "chosen"),
        ("710", "untried"),
    ]
    assert "Unavailable" in candidates[0][2]
    assert (decision["caller"], decision["destination"]) == ("5553003", "9002")  # type: ignore[index]
    assert "closed" in browser.find_element(By.ID, "breaker").text
    screenshot(browser, "routing")
    open_view(browser, "health")
    until(browser, "AMI's state", lambda d: "connected to" in d.find_element(By.ID, "health-list").text)
    facts = browser.find_element(By.ID, "health-list").text
    assert "Asterisk" in facts and "Outbox depth" in facts
    until(
        browser,
        "the lookup chart",
        lambda d: d.find_elements(By.CSS_SELECTOR, '[data-series="CRM lookup"] polyline.mean'),
    )
    screenshot(browser, "health")


def test_a_caller_name_with_markup_shows_as_text(browser: webdriver.Chrome, salara: SalaraProcess) -> None:
    sign_in(browser, salara)
    open_view(browser, "live")
    until(browser, "the live stream", lambda d: d.find_element(By.ID, "live-status").text == "live")
    call_id = incoming_call("5553002", XSS_NAME)
    live = until(browser, "the call under live calls", lambda d: row(d, "live-table", call_id))
    assert live["caller-name"] == XSS_NAME  # type: ignore[index]
    until(browser, "the call gone from live calls", lambda d: row(d, "live-table", call_id) is None, timeout_s=30)
    open_view(browser, "recent")
    ended = until(browser, "the call under recent calls", lambda d: row(d, "recent-table", call_id))
    assert ended["caller-name"] == XSS_NAME  # type: ignore[index]
    # Shown as text: no element was made of it, no script ran, its src was never asked for.
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018  (reading it is the check)
    assert [url for url in requested_urls(browser) if urlsplit(url).path == "/ui/x"] == []


def test_the_page_and_the_docs_load_nothing_from_another_host(browser: webdriver.Chrome, salara: SalaraProcess) -> None:
    sign_in(browser, salara)
    for view in ("live", "recent", "routing", "health", "deliveries"):
        open_view(browser, view)
    urls = requested_urls(browser)
    assert any(url.endswith("/ui/static/js/main.js") for url in urls)
    assert only_this_server(urls, salara) == []
    # Every name but 127.0.0.1 resolves to nothing here: the docs render from the package's own files.
    browser.get(f"{salara.url}/docs")
    until(browser, "Swagger UI", lambda d: "salara" in d.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text)
    until(browser, "its operations", lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
    screenshot(browser, "docs")
    browser.get(f"{salara.url}/redoc")
    until(browser, "ReDoc", lambda d: any("salara" in h.text for h in d.find_elements(By.TAG_NAME, "h1")))
    screenshot(browser, "redoc")
    urls = requested_urls(browser)
    assert any("/ui/static/vendor/swagger-ui/swagger-ui-bundle.js" in url for url in urls)
    assert any("/ui/static/vendor/redoc/redoc.standalone.js" in url for url in urls)
    assert only_this_server(urls, salara) == []


def test_a_token_without_admin_sees_no_deliveries_and_no_replay(
    browser: webdriver.Chrome, salara: SalaraProcess
) -> None:
    sign_in(browser, salara, MONITOR_TOKEN)
    nav = {a.get_attribute("data-view"): a.is_displayed() for a in browser.find_elements(By.CSS_SELECTOR, "#nav a")}
    assert nav == {"live": True, "recent": True, "deliveries": False, "routing": True, "health": True}
    browser.get(f"{salara.url}/ui#deliveries")  # asked for anyway: the first view it may see instead
    until(browser, "the live view", lambda d: d.find_element(By.ID, "view-live").is_displayed())
    assert not browser.find_element(By.ID, "view-deliveries").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "[data-action=replay], [data-action=replay-since]") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#live-table button[data-action=hangup]") == []  # no call right


def test_a_refused_delivery_shows_its_attempts_and_replay_delivers_it(
    browser: webdriver.Chrome, salara: SalaraProcess, crm: FakeCrm
) -> None:
    crm.status = 500  # every event refused
    incoming_call("5553001")
    crm.wait_for(lambda c: bool(c.events()), 30)  # the call's first event, refused
    sign_in(browser, salara)
    open_view(browser, "deliveries")
    until(
        browser,
        "a refused delivery",
        lambda d: d.find_elements(By.CSS_SELECTOR, "#deliveries-body tr[data-delivery] ol.attempts li"),
        30,
    )
    screenshot(browser, "deliveries")
    refused = browser.execute_script(
        "return document.querySelector('#deliveries-body ol.attempts').closest('tr').dataset.delivery"
    )
    assert "500" in browser.find_element(By.CSS_SELECTOR, f'tr[data-delivery="{refused}"] ol.attempts').text
    crm.status = None
    clicked = time.monotonic()
    browser.find_element(By.CSS_SELECTOR, f'tr[data-delivery="{refused}"] button[data-action=replay]').click()

    def delivered(c: FakeCrm) -> bool:
        return any(
            {k.lower(): v for k, v in r.headers.items()}.get("webhook-id") == refused and r.at > clicked
            for r in c.events()
        )

    crm.wait_for(delivered, 30)
    # A token without admin gets 403 when it posts a replay anyway (from the signed-in page, CSRF and all).
    browser.delete_all_cookies()
    sign_in(browser, salara, MONITOR_TOKEN)
    status = browser.execute_async_script(
        "const done = arguments[0];"
        "import('/ui/static/js/api.js').then(api => api.request('/v1/webhooks/default/replay',"
        " {method: 'POST', body: {since: new Date(0).toISOString()}})).then(a => done([a.status, a.body.message]));"
    )
    assert status == [403, "token 'console-monitor' lacks the 'admin' right"]
