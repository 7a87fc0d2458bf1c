"""issue 14, the plan page in a real headless Chromium: `udeploy graph PLAN --format html` and
`udeploy job show JOB --format html` load with no console error and no network request, the DOM holds
every service and every step, hovering or clicking a step shows its details, and a screenshot is
not blank (it holds the action or state colours of the legend).

The plan is the sample monorepo's real offline plan; the job is written by the engine's own state
backend (`LocalState.create_job`, `JobRecord.node`) against that plan, as an apply writes it.
`UDEPLOY_UPDATE_SCREENSHOTS=1` rewrites docs/plan-page.png and docs/job-page.png from these runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.plan.headless_chromium import Page, chromium, chromium_path, colours, open_page
from tests.sample_repo import SampleRepo
from udeploy.engine.apply.state import LocalState
from udeploy.engine.plan.planfile import read_plan, to_document
from udeploy.engine.plan.render import FILL

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (scripts/lab up)")
DOCS = Path(__file__).resolve().parents[2] / "docs"


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def save_screenshot(png: bytes, name: str) -> None:
    if os.environ.get("UDEPLOY_UPDATE_SCREENSHOTS"):
        (DOCS / name).write_bytes(png)


def check_loaded_clean(page: Page, path: Path) -> None:
    assert page.console_errors() == []
    assert page.requests() == [path.resolve().as_uri()], "the page fetched something beyond itself"


def check_dom_and_details(page: Page, plan_path: Path) -> dict[str, str]:
    """Every service in the table and every step in the graph; a click shows a step's details.
    Returns the details panel's text after clicking a registry step."""
    doc = json.loads(plan_path.read_text())
    table = page.evaluate("[...document.querySelectorAll('tbody td.id')].map(td => td.textContent)")
    assert table == [s["id"] for s in doc["services"]]
    steps = page.evaluate("[...document.querySelectorAll('#dag g.node')].map(g => g.querySelector('text')"
                          ".textContent)")
    assert sorted(steps) == sorted(n["id"] for n in doc["graph"]["nodes"])
    assert page.evaluate("document.querySelectorAll('#dag g.edge').length") == len(doc["graph"]["edges"])
    assert "registry@-" not in page.evaluate("document.body.textContent")
    # the whole graph fits in its box at first: the SVG's drawn size is within the window
    box = page.evaluate("(() => { const r = document.querySelector('#dag svg g.graph').getBoundingClientRect();"
                        " return [r.left, r.right, window.innerWidth]; })()")
    assert 0 <= box[0] and box[1] <= box[2]
    registry = next(n for n in doc["graph"]["nodes"] if n["provider"] == "registry")
    index = [n["id"] for n in doc["graph"]["nodes"]].index(registry["id"])
    x, y = page.evaluate(f"(() => {{ const r = document.getElementById('n{index}').getBoundingClientRect();"
                         " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    page.click(x, y)
    page.settle(0.2)
    shown = page.evaluate("[...document.querySelectorAll('section.detail')].filter(s => !s.hidden)"
                          ".map(s => s.innerText)")
    assert len(shown) == 1 and shown[0].startswith(registry["id"])
    facts = shown[0].split("params")[0]
    assert "registry" in facts and "host" not in facts, "a registry step shows its provider alone"
    assert page.evaluate(f"document.getElementById('n{index}').classList.contains('selected')")
    return {"details": shown[0]}


def test_issue14_the_plan_page_in_headless_chromium(shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    plan_path = tmp_path / "plan.json"
    assert cli("plan", "--env", "dev", "--no-refresh", "-out", str(plan_path)).exit_code == 0
    r = cli("graph", str(plan_path), "--format", "html")
    assert r.exit_code == 0, r.stdout
    page_path = tmp_path / "plan.html"
    page_path.write_text(r.stdout)
    with chromium() as page:
        open_page(page, page_path)
        check_loaded_clean(page, page_path)
        png = page.screenshot()
        assert len(colours(png)) > 50, "the screenshot is blank"
        painted = colours(png)
        actions = {s["action"] for s in json.loads(plan_path.read_text())["services"]}
        assert hex_rgb(FILL["deploy"]) in painted and "deploy" in actions
        assert hex_rgb(FILL["prerequisite"]) in painted
        details = check_dom_and_details(page, plan_path)
        assert "verify-artifact" in details["details"]
        check_loaded_clean(page, page_path)  # the interaction raised nothing either
        save_screenshot(page.screenshot(), "plan-page.png")


def test_issue14_the_job_page_in_headless_chromium(shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    plan_path = tmp_path / "plan.json"
    assert cli("plan", "--env", "dev", "--no-refresh", "-out", str(plan_path)).exit_code == 0
    plan = read_plan(plan_path)
    state = tmp_path / "state"
    ids = [n.id for n in plan.nodes]
    job = LocalState(state).create_job(plan_digest=to_document(plan)["digest"], plan_file=str(plan_path),
                                       environment="dev", dry_run=False, nodes=ids)
    # as a walk leaves it: the first service's chain succeeded, one node failed and its dependents
    # were skipped, one node still running, the rest never reached
    first = [n.id for n in plan.nodes if n.service == plan.nodes[0].service]
    for node_id in first:
        job.node(node_id, "succeeded", message="verified")
    failed = next(n for n in plan.nodes if n.kind.value == "import-image" and n.id not in first)
    job.node(failed.id, "failed", message="ctr import: <script>alert(1)</script> exit 1")
    downstream = [b for a, b in plan.edges if a == failed.id]
    for node_id in downstream:
        job.node(node_id, "skipped", message=f"upstream {failed.id} failed")
    running = next(i for i in ids if i not in first and i != failed.id and i not in downstream)
    job.node(running, "running")
    job.finish("failed", {"services": []})

    shown = cli("job", "show", job.id, "--state-dir", str(state))
    assert shown.exit_code == 0, shown.stdout
    states = shown.json["nodes"]
    assert states[failed.id] == "failed" and states[running] == "running" and states[first[0]] == "succeeded"
    assert {states[i] for i in downstream} == {"skipped"}
    assert sum(1 for v in states.values() if v == "not-reached") == len(ids) - len(first) - 2 - len(downstream)

    r = cli("job", "show", job.id, "--format", "html", "--state-dir", str(state))
    assert r.exit_code == 0, r.stdout
    assert "<script>alert(1)" not in r.stdout and "&lt;script&gt;alert(1)" in r.stdout
    page_path = tmp_path / "job.html"
    page_path.write_text(r.stdout)
    with chromium() as page:
        open_page(page, page_path)
        check_loaded_clean(page, page_path)
        png = page.screenshot()
        painted = colours(png)
        for key in ("succeeded", "failed", "skipped", "not-reached"):
            assert hex_rgb(FILL[key]) in painted, f"no {key} colour in the job page"
        legend = page.evaluate("[...document.querySelectorAll('.legend li')].map(li => li.textContent)")
        assert legend == ["succeeded", "failed", "skipped", "running", "not reached"]
        check_dom_and_details(page, plan_path)
        check_loaded_clean(page, page_path)
        save_screenshot(page.screenshot(), "job-page.png")
