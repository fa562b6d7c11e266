"""The dashboard's workflow page in headless Chromium, against real ``asyncjobs web`` and
``asyncjobs worker`` subprocesses on the real redis-server: the graph drawn from
``GET /api/workflows/{id}``, its states followed live, a node opening its job and the job's
page linking back."""

from __future__ import annotations

from typing import Any

import playwright.sync_api as playwright_api

from asyncjobs.testing import free_port
from tests.web.dashboard_support import call, start_web, start_worker
from tests.web.test_dashboard import _close_pipes, browser, env, page  # noqa: F401  (fixtures)

expect = playwright_api.expect


def _chain(base: str, wf_id: str) -> None:
    nodes = [
        {"name": "a", "function": "count_words", "args": ["one two"]},
        {"name": "b", "function": "count_words", "args": ["three"], "depends_on": ["a"]},
        {"name": "c", "function": "count_words", "args": ["four five six"], "depends_on": ["b"]},
    ]
    status, body = call(base, "POST", "/api/workflows", {"workflow_id": wf_id, "nodes": nodes})
    assert status == 202, body


def test_workflow_page_draws_the_graph_and_follows_its_states(page: Any, spawn: Any, env: dict[str, str]) -> None:  # noqa: F811
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start_web(spawn, port, env)
    _chain(base, "wf-dash")
    page.goto(base + "/#/")
    page.fill("#open-workflow input[name=workflow]", "wf-dash")
    page.click("#open-workflow button")
    expect(page).to_have_url(base + "/#/workflows/wf-dash")
    boxes = page.locator("svg.graph .node")
    expect(boxes).to_have_count(3)
    edges = page.locator("svg.graph .edge")
    expect(edges).to_have_count(2)
    pairs = {(e.get_attribute("data-from"), e.get_attribute("data-to")) for e in edges.all()}
    assert pairs == {("wf-dash.a", "wf-dash.b"), ("wf-dash.b", "wf-dash.c")}
    node = {n: page.locator(f'svg.graph .node[data-job="wf-dash.{n}"]') for n in "abc"}
    expect(node["a"]).to_have_attribute("data-state", "queued")  # no worker yet
    expect(node["b"]).to_have_attribute("data-state", "waiting")
    expect(node["c"]).to_have_class("node waiting")
    expect(node["a"]).to_contain_text("count_words · queued")
    expect(page.locator("main h1 + div .status")).to_have_text("running")
    # the roots are left of their children: one layer per depth
    xs = [float(node[n].locator("rect").get_attribute("x") or "nan") for n in "abc"]
    assert xs[0] < xs[1] < xs[2]

    start_worker(spawn, env)
    for n in "abc":
        expect(node[n]).to_have_attribute("data-state", "complete", timeout=60_000)
    expect(node["c"]).to_contain_text("count_words · complete")
    expect(page.locator("main h1 + div .status")).to_have_text("ended")
    expect(page.locator("#wf-progress")).to_have_text("3 of 3 nodes ended")

    node["c"].click()
    expect(page).to_have_url(base + "/#/job/wf-dash.c")
    expect(page.locator("#result")).to_have_text("3")
    page.click("#workflow")  # and back: a node's job page links to its workflow
    expect(page).to_have_url(base + "/#/workflows/wf-dash")
    expect(page.locator("svg.graph .node")).to_have_count(3)


def test_workflow_page_caps_a_huge_graph(page: Any, spawn: Any, env: dict[str, str]) -> None:  # noqa: F811
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start_web(spawn, port, env)
    nodes = [{"name": f"n{i}", "function": "count_words", "args": ["x"]} for i in range(301)]
    nodes.append({"name": "sum", "function": "count_words", "args": ["y"], "depends_on": ["n0", "n1"]})
    status, body = call(base, "POST", "/api/workflows", {"workflow_id": "wf-big", "nodes": nodes})
    assert status == 202, body
    page.goto(base + "/#/workflows/wf-big")
    expect(page.locator("#wf-capped")).to_have_text("Showing the first 300 of 302 nodes.")
    expect(page.locator("svg.graph .node")).to_have_count(300)
    expect(page.locator("svg.graph .edge")).to_have_count(0)  # the child is past the cap


def test_an_unknown_workflow_says_so(page: Any, spawn: Any, env: dict[str, str]) -> None:  # noqa: F811
    port = free_port()
    start_web(spawn, port, env)
    page.goto(f"http://127.0.0.1:{port}/#/workflows/no-such-workflow")
    expect(page.locator("main p.error")).to_have_text("workflow no-such-workflow not found")
