"""The web app in a real browser (Debian's Chromium, driven by Selenium) against the notifier
and matcher as OS processes, the real broker and a real SMTP server (aiosmtpd).

One person's story, in order: sign in by a mailed link; write a query with a typo and see
the error under the right character; fix it and see highlighted hits among recent items;
save it as a topic; subscribe by email; confirm through the mailed link; watch an alert
arrive live and by email; leave with the email's one-click unsubscribe link; find it all in
the alert history. Every page is checked with axe-core (no serious or critical violation)
and photographed light and dark, desktop and phone width, into ``artifacts/screenshots``
(``NEWSWATCH_ARTIFACTS`` moves it; the README's pictures are copied from there).

``make test`` installs the browser where it is missing; under ``CI=true`` a missing browser
fails the test, elsewhere it is a reported skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, ITEMS, Item, Source, encode
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.metrics import PipelineMetrics
from newswatch.shared.processes import free_port
from tests.support.hooks import HookServer
from tests.support.notifier import SmtpSink
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess, cli_token, http_ok
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "support" / "vendor" / "axe-4.14.1.min.js"
SHOTS = Path(os.environ.get("NEWSWATCH_ARTIFACTS", ROOT / "artifacts")) / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
EDITOR = "editor@newswatch.test"
READER = "reader@newswatch.test"
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
WAIT = 60.0


def _browser_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver (make test does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Stack:
    url: str
    smtp: SmtpSink
    publisher: Publisher
    processes: list[ServiceProcess]
    config: Path
    published: int = 0
    axe_checked: list[str] = field(default_factory=list)

    def publish(self, title: str, summary: str, host: str = "news.example") -> None:
        """One new item on newswatch.items, as the fetcher would publish it."""
        self.published += 1
        now = datetime.now(UTC)
        item = Item(
            item_id=f"browser-{self.published:04d}",
            kind="new",
            revision=1,
            title=title,
            summary=summary,
            url=f"https://{host}/story/{self.published}",
            published=now,
            fetched_at=now,
            source=Source(
                feed_url=f"https://{host}/feed.xml",
                feed_title=host.split(".", maxsplit=1)[0].title(),
                host=host,
            ),
        )
        self.publisher.publish([Record(ITEMS, item.item_id, encode(item))])

    def mail_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.smtp.received() if m["To"] == address]


@pytest.fixture
def stack(tmp_path: Path, kafka_settings: KafkaSettings) -> Iterator[Stack]:
    broker = EmbeddedBroker(free_port())
    broker.start()
    smtp = SmtpSink().start()
    api_port, notifier_http, matcher_http = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path,
        http={"api_port": api_port},
        notifier={"smtp": {"host": "127.0.0.1", "port": smtp.port, "sender": "alerts@newswatch.test"}},
        topics=[{"id": "markets", "query": "stocks OR markets"}],
    )
    env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    cli_token(config, "desk", "--role", "admin", "--email", EDITOR, env=env)
    processes = [
        ServiceProcess(
            "notifier",
            ["notifier", "--config", str(config), "--http-port", str(notifier_http)],
            env,
            tmp_path,
        ).start(),
        ServiceProcess(
            "matcher", ["matcher", "--config", str(config), "--http-port", str(matcher_http)], env, tmp_path
        ).start(),
    ]
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "browser-test"),
        PipelineMetrics(CollectorRegistry(), "e2e", "test"),
        send_timeout=10,
    )
    stack = Stack(f"http://127.0.0.1:{api_port}", smtp, publisher, processes, config)
    try:
        for ready in (f"http://127.0.0.1:{notifier_http}/readyz", f"http://127.0.0.1:{matcher_http}/readyz"):
            wait_for(partial(http_ok, ready), WAIT, what=ready)
        yield stack
    except BaseException:
        for process in processes:
            print(f"--- {process.name}\n{process.log_tail(60)}")
        raise
    finally:
        publisher.close()
        for process in processes:
            process.stop()
        smtp.stop()
        broker.stop()


@pytest.fixture
def driver() -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


class Person:
    """What the person does and sees, through the driver; each page is checked and photographed."""

    def __init__(self, driver: Any, stack: Stack) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.stack = stack
        self.by = By
        self.wait_class = WebDriverWait
        self.violations: dict[str, list[str]] = {}

    def go(self, path: str) -> None:
        self.driver.get(path if path.startswith("http") else self.stack.url + path)

    def find(self, css: str) -> Any:
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def finds(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(self.by.CSS_SELECTOR, css))

    def until(self, check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        ignored = (NoSuchElementException, StaleElementReferenceException)  # the page is changing
        return self.wait_class(self.driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored).until(
            lambda _d: check(), message=f"waiting for {what}"
        )

    def text(self) -> str:
        return str(self.find("main").text)

    def click(self, label: str) -> None:
        """Presses the button (or follows the link) whose visible text starts with ``label``."""
        for element in self.finds("main button, main a.button, main a"):
            if element.is_displayed() and element.text.strip().startswith(label):
                element.click()
                return
        raise AssertionError(f"no button {label!r} on {self.driver.current_url}")

    def check_page(self, name: str) -> None:
        """axe-core on the page in both colour schemes, and the four screenshots."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        axe = AXE.read_text()
        for scheme in ("light", "dark"):
            self.driver.execute_cdp_cmd(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
            )
            self.driver.execute_script(axe)
            result = self.driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "axe.run(document, {resultTypes: ['violations']})"
                ".then(r => done(JSON.stringify(r.violations)), e => done(JSON.stringify([{id: 'axe-error', "
                "impact: 'critical', help: String(e), nodes: []}])));"
            )
            bad = [
                f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
                for v in json.loads(result)
                if v["impact"] in ("serious", "critical")
            ]
            if bad:
                self.violations[f"{name} ({scheme})"] = bad
            for size, (width, height) in SIZES.items():
                self.driver.execute_cdp_cmd(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"},
                )
                time.sleep(0.1)  # a layout pass at the new width
                self.driver.save_screenshot(str(SHOTS / f"{name}-{scheme}-{size}.png"))
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        self.stack.axe_checked.append(name)


def _link(message: EmailMessage, path: str) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"(http://127\.0\.0\.1:\d+" + path + r"[A-Za-z0-9_-]+)", body.get_content())
    assert found, body.get_content()
    return found.group(1)


def test_a_person_signs_in_writes_a_topic_subscribes_and_leaves(stack: Stack, driver: Any) -> None:
    me = Person(driver, stack)
    stack.publish(
        "North Korean troops deployed to Ukraine, officials say", "Pyongyang sent soldiers to Kursk."
    )
    stack.publish("Stocks rally on rate hopes", "Markets rose in Asia.")

    # Sign in with a link mailed to a known address.
    me.go("/")
    me.until(lambda: "/app/signin" in driver.current_url, "the sign-in page")
    me.check_page("signin")
    me.find("#email").send_keys(EDITOR)
    me.click("Email me a link")
    me.until(lambda: "a sign-in link is on its way" in me.text(), "the mailed notice")
    link = _link(me.until(lambda: stack.mail_to(EDITOR), "the sign-in email")[0], "/app/signin/")
    me.go(link)
    me.check_page("signin-link")
    me.click("Sign in")
    me.until(lambda: driver.current_url.endswith("/app/topics"), "the topics page")
    assert "markets" in me.text()

    # A query with a typo shows the error under the right character; the fix shows the hits.
    me.go("/app/topics/new")
    me.find("#id").send_keys("nk-ukraine")
    me.find("#query").send_keys("North Korea NEAR/5 (troops")  # the group is never closed
    error = me.until(lambda: [e for e in me.finds("#preview .query-error") if e.is_displayed()], "the error")[
        0
    ]
    caret = error.find_element(me.by.CSS_SELECTOR, ".caret").get_attribute("textContent")
    assert caret == " " * 19 + "^" and "(at character 20)" in error.text, (caret, error.text)
    me.check_page("topic-error")
    me.find("#query").clear()
    me.find("#query").send_keys("North Korea NEAR/5 troops")
    marks = me.until(lambda: me.finds("#preview mark"), "highlighted hits")
    marked = " ".join(m.text.lower() for m in marks)
    assert "north korean" in marked and "troops" in marked, marked
    count = me.find("#preview .count").text
    assert count.startswith("1 of ") and count.endswith("recent items would match."), count
    assert "DPRK" in me.find("#preview .aliases").text  # the alias expansion of North Korea
    me.check_page("topic-preview")
    me.click("Save topic")
    me.until(lambda: "Saved topic nk-ukraine" in me.text(), "the saved topic")
    me.check_page("topics")

    # Subscribe by email; the address confirms through the mailed link.
    row = next(r for r in me.finds("tbody tr") if r.text.startswith("nk-ukraine"))
    row.find_element(me.by.CSS_SELECTOR, "a.button").click()
    me.until(lambda: driver.current_url.split("?")[0].endswith("/app/subscriptions/new"), "the form")
    me.find("#address").send_keys(READER)
    me.check_page("subscription-form")
    me.click("Subscribe")
    me.until(lambda: "waiting for confirmation" in me.text(), "the pending subscription")
    me.check_page("subscriptions-pending")
    confirm = _link(me.until(lambda: stack.mail_to(READER), "the confirmation email")[0], "/confirm/")
    me.go(confirm)
    me.check_page("confirm")
    me.click("Confirm")
    me.until(lambda: "Confirmed" in me.text(), "the confirmation")
    me.check_page("confirmed")

    # An alert arrives live in the open history and by email.
    me.go("/app/alerts")
    me.until(lambda: driver.execute_script("return document.readyState") == "complete", "the alerts page")
    alert_mail: list[EmailMessage] = []
    for attempt in range(20):  # the matcher picks the new topic up within seconds: bounded retries
        stack.publish(f"North Korea sends more troops, report {attempt}", "Troops from North Korea arrived.")
        try:
            alert_mail = me.until(
                lambda: [m for m in stack.mail_to(READER) if "report" in str(m["Subject"])], "an alert", 5
            )
            break
        except Exception:  # noqa: BLE001 - selenium's TimeoutException: publish another
            continue
    assert alert_mail, "no alert email within 20 items"
    live = me.until(
        lambda: [li for li in me.finds("#live-list li") if "North Korea" in li.text], "the live alert"
    )
    assert "nk-ukraine" in live[0].text
    me.check_page("alerts-live")

    # The email's way out: RFC 8058 headers and a visible link to the same one-click URL.
    mail = alert_mail[0]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = str(mail["List-Unsubscribe"]).strip("<>")
    assert unsubscribe.startswith(stack.url + "/u/") and unsubscribe in _link(mail, "/u/")
    me.go(unsubscribe)
    me.check_page("unsubscribe")
    me.click("Unsubscribe")
    me.until(lambda: "You are unsubscribed" in me.text(), "the goodbye")
    me.check_page("unsubscribed")

    # The history shows it all: the alert with its reason, the confirmation, the unsubscribe.
    me.go("/app/alerts")
    history = me.text()
    assert "North Korea sends more troops" in history and "Why:" in history
    assert "the address confirmed the subscription" in history
    assert "the recipient unsubscribed (link)" in history
    me.check_page("alerts")
    me.go("/app/subscriptions")
    assert "unsubscribed" in me.text()
    me.check_page("subscriptions")

    assert not me.violations, json.dumps(me.violations, indent=1)
    assert len(list(SHOTS.glob("*.png"))) >= 4 * len(stack.axe_checked)


def test_alert_feeds_validate_and_answer_304_and_404(stack: Stack) -> None:
    """A subscription's Atom and JSON feeds: feedparser reads the Atom without complaint, the
    JSON Feed passes the JSON Feed 1.1 schema, a second GET with the ETag is a 304, and
    rotating the feed addresses makes the old ones 404."""
    import feedparser
    import jsonschema

    from tests.support.jsonfeed import JSON_FEED_SCHEMA

    token = cli_token(stack.config, "ops", "--role", "admin")
    api = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    hook = HookServer().start()
    try:
        assert api.put("/topics/stocks", json={"query": "stocks"}).status_code in (200, 201)
        created = api.post("/subscriptions", json={"id": "feedme", "topics": ["stocks"], "to": hook.url})
        assert created.status_code == 201, created.text
        for attempt in range(20):
            stack.publish(f"Stocks <b>rally</b> & bonds fall, day {attempt}", "Stocks rose.")
            try:
                wait_for(hook.delivered, 5, what="a webhook alert")
                break
            except AssertionError:
                continue
        hook_seen = [h.body["item"]["title"] for h in hook.delivered()]
        assert hook_seen
        feeds = api.get("/subscriptions/feedme/feeds").json()
        atom = httpx.get(feeds["atom"], timeout=30)
        assert atom.status_code == 200 and atom.headers["content-type"].startswith("application/atom+xml")
        parsed = feedparser.parse(atom.content)
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert parsed.entries[0].title == hook_seen[0]
        assert any(link.rel == "self" and link.href == feeds["atom"] for link in parsed.feed.links)
        entry_id = parsed.entries[0].id
        again = httpx.get(feeds["atom"], headers={"If-None-Match": atom.headers["etag"]}, timeout=30)
        assert again.status_code == 304 and again.content == b""
        document = httpx.get(feeds["json"], timeout=30)
        assert document.headers["content-type"].startswith("application/feed+json")
        body = document.json()
        jsonschema.validate(body, JSON_FEED_SCHEMA)
        assert body["items"][0]["id"] == entry_id  # one stable id per alert in both formats
        assert body["feed_url"] == feeds["json"]
        rotated = api.post("/subscriptions/feedme/feeds/rotate").json()
        assert rotated["atom"] != feeds["atom"]
        assert httpx.get(feeds["atom"], timeout=30).status_code == 404
        assert httpx.get(feeds["json"], timeout=30).status_code == 404
        assert httpx.get(rotated["atom"], timeout=30).status_code == 200
    finally:
        hook.stop()
        api.close()
