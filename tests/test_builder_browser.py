"""The visual builder in a real browser: JupyterLab, Debian's chromium, clicks and drags only.

From an empty canvas and the article's four tools, a person builds the article's RAG router,
saves it, and the saved spec runs each of the article's queries down its route with its tools.
Then they delete a route target and see the kernel's message on the graph, undo, save (nothing
changed), change one route's tools, save: the spec's diff is that one line. Screenshots of each
stage are written to the test's tmp_path (``builder-*.png``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pytest
from browsers import CHROMIUM, Lab, chromium, lab_page, run_notebook, start_lab

import wfkit as wf
from wfkit.examples import ARTICLE_QUERIES, rag_router, reliable_tools

# JupyterLab and chromium for every test: 10-30 s each (`pytest -m "not slow"` leaves them out).
pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page


@pytest.fixture(scope="module")
def one_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One JupyterLab for the module: starting one took 2-7 s of each test's 10-30. The builder's
    kernels never use the workspace, and each test has a folder of its own (``lab``), so sharing
    the server shares nothing a test reads; lab_page shuts each test's kernels down after it.
    One chromium too (starting playwright's driver and chromium took 2-4 s of each test); each
    test's page has a browser context of its own, so no cookie, storage or cache is shared."""
    root = tmp_path_factory.mktemp("lab")
    with start_lab(root, root / "ws") as server:
        if not CHROMIUM.exists():  # the tests skip
            yield server
            return
        with chromium() as browser:
            yield dataclasses.replace(server, browser=browser)


@pytest.fixture
def lab(one_lab: Lab, tmp_path: Path) -> Lab:
    """The module's JupyterLab with the test's tmp_path as a folder of its root (a link to it):
    its notebooks open from there and their kernels run there, so what the builder saves lands in
    tmp_path, as with a server of its own."""
    (one_lab.root / tmp_path.name).symlink_to(tmp_path, target_is_directory=True)
    return dataclasses.replace(one_lab, prefix=f"{tmp_path.name}/")


NOTEBOOK = "builder.ipynb"
SOURCE = (
    "import wfkit as wf\n"
    "import wfkit.examples as ex\n\n"
    'editor = wf.edit("router.yaml", steps=ex, tools=ex.reliable_tools())\n'
    "editor"
)


def _center(locator: Locator) -> tuple[float, float]:
    """The element's centre on the page. The graph is redrawn whenever the kernel's answer arrives,
    so an element found a moment ago may just have been replaced: look it up again."""
    for _ in range(20):
        locator.wait_for(state="visible")
        box = locator.bounding_box()
        if box is not None:
            return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        time.sleep(0.05)
    pytest.fail(f"{locator} has no box on the page")


def _box(locator: Locator) -> dict[str, float]:
    box = locator.bounding_box()
    if box is None:
        pytest.fail(f"{locator} has no box on the page")
    return dict(box)


def _drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=12)
    page.mouse.up()


def _run(spec: Path, query: str) -> Any:
    """Run the saved spec as a teammate would load it (the CLI's own tests run it from the shell)."""
    flow = wf.Workflow.from_spec(spec, tools=reliable_tools())
    return flow.run({"query": query}, workspace=False)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_build_the_article_router_by_clicks_and_drags(tmp_path: Path, lab: Lab) -> None:
    """Build, save, run the four queries, break and undo, and get a one-line diff for one change."""
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SOURCE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, tmp_path / NOTEBOOK)
    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "builder-failure.png") as page:
        _scenario(page, expect, lab, tmp_path)


def _scenario(page: Page, expect: Any, server: Lab, folder: Path) -> None:
    notebook = run_notebook(page, server, NOTEBOOK, expect)
    builder = notebook.locator(".wfk-builder")
    expect(builder).to_be_visible(timeout=30_000)
    builder.scroll_into_view_if_needed()
    problems = builder.locator(".wfk-problems")
    expect(problems).to_contain_text("the flow has no steps yet")
    for name in ("classify", "code_search", "data_query", "web_search", "generate_answer"):
        builder.get_by_role("button", name=f"Add step {name}", exact=True).click()
    node = {
        name: builder.locator(f"g[data-step='{name}'] rect.wfk-node-box")
        for name in ("classify", "code_search", "data_query", "web_search", "generate_answer")
    }

    # Drag the boxes into the shape of the router: classify on top, three searches, the answer.
    canvas = builder.locator("svg.wfk-svg")
    origin = canvas.bounding_box()
    assert origin is not None
    places = {
        "classify": (220, 30),
        "code_search": (30, 190),
        "data_query": (220, 190),
        "web_search": (410, 190),
        "generate_answer": (220, 350),
    }
    for name, (x, y) in places.items():
        _drag(page, _center(node[name]), (origin["x"] + x + 75, origin["y"] + y + 22))
    layout_before_connect = builder.locator("g[data-step='classify']").get_attribute("transform")
    assert "translate(220,30)" == layout_before_connect

    def connect(src: str, dst: str) -> None:
        port = builder.locator(f"circle[data-port='{src}']")
        _drag(page, _center(port), _center(node[dst]))

    panel = builder.locator(".wfk-panel")

    def condition(field: str, op: str, value: str) -> None:
        panel.get_by_label("Condition field").fill(field)
        panel.get_by_label("Condition field").press("Enter")
        panel.get_by_label("Condition operator").select_option(op)
        panel.get_by_label("Condition value").fill(value)
        panel.get_by_label("Condition value").press("Enter")

    def tools(*names: str) -> None:
        for name in names:
            panel.get_by_label(f"Tool {name}").check()

    connect("classify", "code_search")  # a plain edge first: make it a route
    expect(panel).to_contain_text("Connection: classify → code_search")
    panel.get_by_label("Kind").select_option("route")
    condition("query_type", "eq", "code")
    tools("web_search", "code_interpreter")
    connect("classify", "data_query")  # classify has routes now: a new route
    expect(panel).to_contain_text("Route: classify → data_query")
    condition("query_type", "eq", "data")
    tools("sql_query", "file_read")
    connect("classify", "web_search")
    condition("query_type", "in", "general, factual")
    tools("web_search")
    connect("classify", "web_search")
    panel.get_by_label("Kind").select_option("default")
    expect(panel).to_contain_text("Default route: classify → web_search")
    tools("web_search")
    for search in ("code_search", "data_query", "web_search"):
        connect(search, "generate_answer")
    expect(problems).to_contain_text("The kernel finds no problems.")
    builder.screenshot(path=str(folder / "builder-1-built.png"))

    # The keyboard: a focused step moves with the arrow keys, and Ctrl+Z takes the move back.
    classify_box = builder.locator("g[data-step='classify']")
    classify_box.focus()
    page.keyboard.press("ArrowRight")
    expect(classify_box).to_have_attribute("transform", "translate(230,30)")
    page.keyboard.press("Control+z")
    expect(classify_box).to_have_attribute("transform", "translate(220,30)")

    builder.get_by_role("button", name="Save flow spec").click()
    expect(builder.locator(".wfk-status")).to_contain_text("saved router.yaml: 5 steps")
    saved = folder / "router.yaml"
    first = saved.read_text()
    spec = json.loads(json.dumps(__import__("yaml").safe_load(first)))
    article = rag_router().to_spec()
    assert (article["entry"], article["steps"], article["edges"], article["routes"]) == (
        spec["entry"],
        spec["steps"],
        spec["edges"],
        spec["routes"],
    )
    assert set(places) == set(spec["metadata"]["layout"])

    for query, (branch, bound) in ARTICLE_QUERIES.items():
        run = _run(saved, query)
        assert ("succeeded", ["classify", branch, "generate_answer"]) == (run.status, run.path())
        assert bound == next(e.tools for e in run.events if e.step == branch)
        assert f"answered {query!r} with {', '.join(bound)}" == run.state["answer"]

    # Delete a route target: the kernel's message appears on the graph, on the route and in the list.
    node["data_query"].click()
    panel.get_by_role("button", name="Delete step data_query").click()
    ghost = builder.locator("g[data-step='data_query'].wfk-missing")
    expect(ghost).to_be_visible()
    broken = builder.locator("g[data-edge='route:classify:1']")
    expect(broken).to_have_class(re.compile(r"\bwfk-bad\b"))
    message = "the route classify → data_query leads to 'data_query', which is not a step"
    expect(broken).to_have_attribute("aria-label", re.compile(re.escape(message)))
    expect(problems).to_contain_text(message)
    builder.screenshot(path=str(folder / "builder-2-broken.png"))

    builder.get_by_role("button", name="Undo (Ctrl+Z)").click()
    expect(problems).to_contain_text("The kernel finds no problems.")
    expect(builder.locator("g[data-step='data_query']:not(.wfk-missing)")).to_be_visible()
    builder.get_by_role("button", name="Save flow spec").click()
    expect(builder.locator(".wfk-status")).to_contain_text("saved router.yaml")
    assert first == saved.read_text()  # undo restored the flow exactly: no diff at all

    # One change, one line: the data route stops binding file_read.
    builder.locator("g[data-label-for='route:classify:1'] rect.wfk-edge-label-bg").click()
    expect(panel).to_contain_text("Route: classify → data_query")
    panel.get_by_label("Tool file_read").uncheck()
    builder.get_by_role("button", name="Save flow spec").click()
    expect(builder.locator(".wfk-status")).to_contain_text("saved router.yaml")
    builder.screenshot(path=str(folder / "builder-3-changed.png"))
    changed = [
        line
        for line in difflib.unified_diff(first.splitlines(), saved.read_text().splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("---", "+++"))
    ]
    assert [
        "-    - {when: {field: query_type, op: eq, value: data}, go: data_query, tools: [sql_query, file_read]}",
        "+    - {when: {field: query_type, op: eq, value: data}, go: data_query, tools: [sql_query]}",
    ] == changed
    run = _run(saved, "What were Q1 sales figures?")
    assert ("sql_query",) == next(e.tools for e in run.events if e.step == "data_query")


SLOW_KERNEL = (
    "import time\n"
    "import wfkit as wf\n"
    "import wfkit.examples as ex\n\n"
    'editor = wf.edit("slow.yaml", steps=ex, tools=ex.reliable_tools())\n\n\n'
    "def answer_late(change):\n"
    "    time.sleep(1.5)  # a busy kernel: its answer to a change comes late\n"
    "    editor._on_spec(change)\n\n\n"
    'editor.unobserve(editor._on_spec, names="spec")\n'
    'editor.observe(answer_late, names="spec")\n'
    "editor"
)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_text_typed_while_the_kernel_answers_is_kept(tmp_path: Path, lab: Lab) -> None:
    """The kernel's answer to a change redraws the form; text typed meanwhile and not committed
    yet stays in its field, focused, and Enter commits it (the kernel here answers 1.5 s late)."""
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SLOW_KERNEL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, tmp_path / "slow.ipynb")
    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "slow-failure.png") as page:
        builder = run_notebook(page, lab, "slow.ipynb", expect).locator(".wfk-builder")
        expect(builder).to_be_visible(timeout=30_000)
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("the flow has no steps yet")

        builder.get_by_role("button", name="Add step classify", exact=True).click()  # answered 1.5 s later
        builder.locator("g[data-step='classify'] rect.wfk-node-box").click()
        timeout = builder.locator(".wfk-panel").get_by_label("Timeout per attempt (s)")
        timeout.fill("7")  # not committed: no Enter yet
        expect(problems).not_to_contain_text("the flow has no steps yet", timeout=10_000)  # the answer came
        expect(timeout).to_have_value("7")
        expect(timeout).to_be_focused()
        timeout.press("Enter")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved slow.yaml", timeout=10_000)
    saved = __import__("yaml").safe_load((tmp_path / "slow.yaml").read_text())
    assert 7 == saved["steps"]["classify"]["timeout"]


def _router_builder(page: Any, lab: Lab, notebook: Path) -> Any:
    """The builder on the router example, opened from a notebook written at ``notebook`` and run in
    ``page``: its locator, visible and scrolled into view."""
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SOURCE.replace('"router.yaml"', "ex.rag_router()"))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, notebook)
    builder = run_notebook(page, lab, notebook.name, expect).locator(".wfk-builder")
    expect(builder).to_be_visible(timeout=30_000)
    builder.scroll_into_view_if_needed()
    return builder


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_the_canvas_keeps_its_width_in_a_narrow_window(tmp_path: Path, lab: Lab) -> None:
    """In a 1,300 px window beside JupyterLab's file browser the settings panel goes under the canvas,
    which keeps at least 600 px (palette and panel beside it left about 340); folding the palette
    away from the toolbar gives the canvas the builder's whole width."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1300, "height": 900}, tmp_path / "narrow-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "narrow.ipynb")
        expect(builder).to_have_class(re.compile(r"\bwfk-stacked\b"))
        canvas, panel = _box(builder.locator(".wfk-canvas")), _box(builder.locator(".wfk-panel"))
        assert canvas["width"] >= 600
        assert panel["y"] >= canvas["y"] + canvas["height"] - 1  # under the canvas, not beside it
        builder.screenshot(path=str(tmp_path / "builder-narrow.png"))

        fold = builder.get_by_role("button", name="Show or hide the step functions")
        fold.click()
        expect(fold).to_have_attribute("aria-pressed", "false")
        expect(builder.locator(".wfk-palette")).to_be_hidden()
        assert _box(builder.locator(".wfk-canvas"))["width"] >= _box(builder)["width"] - 4


def _route_compared_to_a_blank_value(builder: Any) -> Any:
    """Open the router's first route (classify -> code_search), change its condition to `lt` and
    leave its value box empty, as a user who forgot the bound; the route's panel."""
    from playwright.sync_api import expect

    builder.locator("g[data-label-for='route:classify:0'] rect.wfk-edge-label-bg").click()
    panel = builder.locator(".wfk-panel")
    expect(panel).to_contain_text("Route: classify → code_search")
    panel.get_by_label("Condition operator").select_option("lt")
    panel.get_by_label("Condition value").fill("")
    panel.get_by_label("Condition value").press("Enter")
    return panel


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_comparison_value_left_empty_is_marked_at_its_box_and_not_saved(tmp_path: Path, lab: Lab) -> None:
    """A route changed to `lt` with its value box left empty: the kernel's message is shown under
    that box, which is marked invalid, and Save writes nothing; a value typed in clears the mark and
    Save writes it (the box used to save `value: ''`, which failed the run when first tried)."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "empty-value-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "empty.ipynb")
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("The kernel finds no problems.")
        panel = _route_compared_to_a_blank_value(builder)
        message = "tests 'query_type' with 'lt', and its value box is empty: type a value to compare with"
        expect(panel.locator(".wfk-field-problem")).to_contain_text(message)
        expect(panel.get_by_label("Condition value")).to_have_attribute("aria-invalid", "true")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("not saved: 1 problem to fix first")
        builder.screenshot(path=str(tmp_path / "builder-empty-value.png"))
        assert not (tmp_path / "rag-router.yaml").exists()

        panel.get_by_label("Condition value").fill("3")
        panel.get_by_label("Condition value").press("Enter")
        expect(problems).to_contain_text("The kernel finds no problems.")
        expect(panel.get_by_label("Condition value")).not_to_have_attribute("aria-invalid", "true")
        expect(panel.locator(".wfk-field-problem")).to_have_count(0)
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert {"field": "query_type", "op": "lt", "value": 3} == saved["routes"]["classify"]["routes"][0]["when"]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_blank_value_is_shown_once_under_its_box_beside_the_routes_other_problems(tmp_path: Path, lab: Lab) -> None:
    """A route whose target was deleted, then changed to `lt` with its value box left empty: the
    route's form lists the missing target at its top, and the blank value only under the value box
    (it was in both places); the builder's list of problems has both."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "once-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "once.ipynb")
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.locator("g[data-step='code_search'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        panel.get_by_role("button", name="Delete step code_search").click()
        missing = "the route classify → code_search leads to 'code_search', which is not a step"
        expect(problems).to_contain_text(missing)
        panel = _route_compared_to_a_blank_value(builder)
        blank = "tests 'query_type' with 'lt', and its value box is empty: type a value to compare with"
        expect(panel.locator(".wfk-field-problem")).to_contain_text(blank)
        expect(problems).to_contain_text(blank)
        expect(panel.locator(".wfk-form-problems")).to_contain_text(missing)
        expect(panel.locator(".wfk-form-problems")).not_to_contain_text(blank)
        expect(panel.get_by_text(re.compile(re.escape(blank)))).to_have_count(1)
        builder.screenshot(path=str(tmp_path / "builder-blank-once.png"))


# For every edge label: how far its centre lies from its own edge's path (in the canvas's units).
LABEL_DISTANCES = """(svg) => {
    const out = {};
    for (const tag of svg.querySelectorAll("g[data-label-for]")) {
        const id = tag.getAttribute("data-label-for");
        const rect = tag.querySelector("rect.wfk-edge-label-bg");
        const x = rect.x.baseVal.value + rect.width.baseVal.value / 2;
        const y = rect.y.baseVal.value + rect.height.baseVal.value / 2;
        const path = svg.querySelector(`g[data-edge="${CSS.escape(id)}"] path.wfk-edge-line`);
        const total = path.getTotalLength();
        let best = Infinity;
        for (let i = 0; i <= 200; i++) {
            const p = path.getPointAtLength((total * i) / 200);
            best = Math.min(best, Math.hypot(p.x - x, p.y - y));
        }
        out[id] = best;
    }
    return out;
}"""


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_route_labels_sit_on_their_own_edges(tmp_path: Path, lab: Lab) -> None:
    """Each route's label sits on its own edge, not beside another one, in the router example's
    layout and after boxes are dragged away (labels move with their edges)."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1400, "height": 1000}, tmp_path / "labels-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "labels.ipynb")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
        canvas = builder.locator("svg.wfk-svg")

        def check(stage: str) -> None:
            distances = canvas.evaluate(LABEL_DISTANCES)
            assert {"route:classify:0", "route:classify:1", "route:classify:2"} <= set(distances)
            far = {edge: round(d, 1) for edge, d in distances.items() if d > 24}
            assert not far, f"{stage}: labels away from their own edges: {far}"

        check("as laid out")
        builder.screenshot(path=str(tmp_path / "labels-1-laid-out.png"))
        answer = builder.locator("g[data-step='generate_answer'] rect.wfk-node-box")
        start = _center(answer)
        _drag(page, start, (start[0] + 160, start[1] + 20))
        check("generate_answer dragged")
        data = builder.locator("g[data-step='data_query'] rect.wfk-node-box")
        start = _center(data)
        _drag(page, start, (start[0] - 40, start[1] + 60))
        check("data_query dragged")
        builder.screenshot(path=str(tmp_path / "labels-2-dragged.png"))


# Every overlap of a route label with a step's box or with another label (in the canvas's units).
LABEL_OVERLAPS = """(svg) => {
    const boxes = [];
    for (const tag of svg.querySelectorAll("g[data-label-for]")) {
        const r = tag.querySelector("rect.wfk-edge-label-bg").getBBox();
        boxes.push({ name: `label of ${tag.getAttribute("data-label-for")}`, x: r.x, y: r.y, w: r.width, h: r.height });
    }
    const labels = boxes.length;
    for (const step of svg.querySelectorAll("g[data-step]")) {
        const at = step.transform.baseVal.consolidate().matrix;
        const r = step.querySelector("rect.wfk-node-box").getBBox();
        const name = `step ${step.getAttribute("data-step")}`;
        boxes.push({ name, x: at.e + r.x, y: at.f + r.y, w: r.width, h: r.height });
    }
    const out = [];
    for (let i = 0; i < labels; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
            const a = boxes[i], b = boxes[j];
            const x = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
            const y = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
            if (x > 0 && y > 0) out.push(`${a.name} covers ${b.name} by ${Math.round(x)}x${Math.round(y)}`);
        }
    }
    return out;
}"""


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_the_first_layout_leaves_room_for_every_route_label(tmp_path: Path, lab: Lab) -> None:
    """On the router example's first layout (and after Tidy layout) no route label covers a step
    or another label: the four labels out of classify, two of them on the pair of edges to
    web_search, each get a place of their own."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1400, "height": 1000}, tmp_path / "room-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "room.ipynb")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
        canvas = builder.locator("svg.wfk-svg")
        builder.screenshot(path=str(tmp_path / "room-1-laid-out.png"))
        assert [] == canvas.evaluate(LABEL_OVERLAPS)
        answer = builder.locator("g[data-step='generate_answer']")
        laid_out = answer.get_attribute("transform")
        start = _center(answer.locator("rect.wfk-node-box"))
        _drag(page, start, (start[0] + 200, start[1] - 120))
        expect(answer).not_to_have_attribute("transform", laid_out or "")
        builder.get_by_role("button", name="Lay out the graph again").click()
        expect(answer).to_have_attribute("transform", laid_out or "")
        assert [] == canvas.evaluate(LABEL_OVERLAPS)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_the_status_line_says_when_edits_are_not_saved_yet(tmp_path: Path, lab: Lab) -> None:
    """After a Save, an edit turns the status line to "unsaved changes" (it kept saying "saved
    rag-router.yaml" while the file held the old timeout); Save brings "saved" back and writes the edit."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "unsaved-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "unsaved.ipynb")
        status = builder.locator(".wfk-status")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(status).to_contain_text("saved rag-router.yaml")

        builder.locator("g[data-step='classify'] rect.wfk-node-box").click()
        timeout = builder.locator(".wfk-panel").get_by_label("Timeout per attempt (s)")
        timeout.fill("30")
        timeout.press("Enter")
        expect(status).to_have_text("unsaved changes: Save writes rag-router.yaml")
        builder.screenshot(path=str(tmp_path / "builder-unsaved.png"))
        assert "timeout" not in (tmp_path / "rag-router.yaml").read_text()

        builder.get_by_role("button", name="Save flow spec").click()
        expect(status).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert 30 == saved["steps"]["classify"]["timeout"]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_ctrl_s_in_a_box_being_typed_in_saves_what_it_shows(tmp_path: Path, lab: Lab) -> None:
    """Ctrl+S pressed while typing a timeout (no Enter, no Tab) saves that timeout too: it was left
    out of the file while the status line said "saved" and the box still showed it."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "ctrl-s-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "ctrl-s.ipynb")
        builder.locator("g[data-step='classify'] rect.wfk-node-box").click()
        timeout = builder.locator(".wfk-panel").get_by_label("Timeout per attempt (s)")
        timeout.click()
        page.keyboard.type("15")
        page.keyboard.press("Control+s")
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
        expect(timeout).to_have_value("15")
        expect(builder.locator("g[data-step='classify']")).to_contain_text("15s")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert 15 == saved["steps"]["classify"]["timeout"]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_write_stub_says_which_file_to_fill_in(tmp_path: Path, lab: Lab) -> None:
    """ "Write stub" adds the step and says in the status line which file holds the function to
    fill in (the message was wiped at once by the redraw of the added step)."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "stub-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "stub.ipynb")
        palette = builder.locator(".wfk-palette")
        palette.get_by_label("Function name").fill("notify_team")
        palette.get_by_role("button", name="Write stub", exact=False).click()
        expect(builder.locator("g[data-step='notify_team']")).to_be_visible()
        expect(builder.locator(".wfk-status")).to_have_text("wrote notify_team() into rag_router_steps.py")
        builder.screenshot(path=str(tmp_path / "builder-stub.png"))
    assert "def notify_team(state, ctx):" in (tmp_path / "rag_router_steps.py").read_text()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_fraction_in_a_count_box_is_refused_not_rounded(tmp_path: Path, lab: Lab) -> None:
    """1.5 typed as Retries (or 2.5 as the visit bound) gets the kernel's message and is not saved;
    the builder used to round it to 2 (3) without a word, and save that."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "fraction-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "fraction.ipynb")
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.locator("g[data-step='classify'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        for label, typed in (("Retries", "1.5"), ("Visit bound (max visits in a loop)", "2.5")):
            panel.get_by_label(label).fill(typed)
            panel.get_by_label(label).press("Enter")
        expect(problems).to_contain_text("Retries of step 'classify' is 1.5: type a whole number")
        expect(problems).to_contain_text("Visit bound of step 'classify' is 2.5: type a whole number")
        expect(panel.get_by_label("Retries")).to_have_value("1.5")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_have_text("not saved: 2 problems to fix first")
        builder.screenshot(path=str(tmp_path / "builder-fraction.png"))
    assert not (tmp_path / "rag-router.yaml").exists()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_blank_retry_boxes_say_what_the_step_will_do(tmp_path: Path, lab: Lab) -> None:
    """A step without a retry policy shows "0: no retries" in its blank Retries box; once a first
    wait is set, the blank boxes show the counts the step now uses ("3 (default)"): a blank Retries
    box beside a first wait of 2 s read as no retries, though the step retried 3 times."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "defaults-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "defaults.ipynb")
        builder.locator("g[data-step='classify'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        expect(panel.get_by_label("Retries")).to_have_attribute("placeholder", "0: no retries")
        panel.get_by_label("First wait (s)").fill("2")
        panel.get_by_label("First wait (s)").press("Enter")
        expect(panel.get_by_label("Retries")).to_have_attribute("placeholder", "3 (default)")
        expect(panel.get_by_label("Longest wait (s)")).to_have_attribute("placeholder", "60 (default)")
        builder.screenshot(path=str(tmp_path / "builder-retry-defaults.png"))
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert {"max_retries": 3, "base_delay": 2} == saved["steps"]["classify"]["retry"]
    assert 3 == wf.Workflow.from_spec(tmp_path / "rag-router.yaml").steps["classify"].retry.max_retries


# The rows of dark pixels left of a list item (its bullet), from its top, in a screenshot.
def _bullet_rows(page: Page, item: Locator) -> list[int]:
    import io

    from PIL import Image

    box = _box(item)
    shot = page.screenshot(clip={"x": box["x"] - 14, "y": box["y"], "width": 12, "height": box["height"]})
    image = Image.open(io.BytesIO(shot)).convert("L")
    return [y for y in range(image.height) if any(image.getpixel((x, y)) < 160 for x in range(image.width))]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_long_problem_has_its_bullet_on_its_first_line(tmp_path: Path, lab: Lab) -> None:
    """A problem whose message wraps (routes left without their default) has its bullet beside its
    first line; the bullet sat beside its last line, so the list read as one more problem than
    the count above it said."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1200, "height": 1100}, tmp_path / "bullet-failure.png") as page:  # it wraps
        builder = _router_builder(page, lab, tmp_path / "bullet.ipynb")
        builder.locator("g[data-label-for='default:classify'] rect.wfk-edge-label-bg").click()
        builder.locator(".wfk-panel").get_by_role("button", name="Delete this default route").click()
        item = builder.locator(".wfk-problems li", has_text="have no default route")
        expect(item).to_be_visible()
        assert _box(item)["height"] > 30  # the message wraps
        builder.screenshot(path=str(tmp_path / "builder-long-problem.png"))
        rows = _bullet_rows(page, item)
        assert rows, "no bullet beside the problem"
        assert max(rows) < 18, rows  # within its first line of text (18 px)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_save_to_a_folder_that_does_not_exist_says_so(tmp_path: Path, lab: Lab) -> None:
    """Save to `specs/router.yaml` with no `specs` folder says in the status line that nothing was
    written, and why; the kernel's error went to JupyterLab's log, and the builder showed nothing.
    The builder speaks to its user (create the folder; no tools, no step functions on offer), never
    of the `wf.edit(...)` call, which nothing inside it can change (it said "give wf.edit a path=",
    "pass steps= to wf.edit", "pass tools= to wf.edit"): that is said once, under each call's cell."""
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            'import wfkit as wf\nimport wfkit.examples as ex\n\nwf.edit(ex.rag_router(), path="specs/router.yaml")'
        ),
        nbformat.v4.new_code_cell('wf.edit("empty.yaml", steps=[])'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, tmp_path / "nofolder.ipynb")
    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "nofolder-failure.png") as page:
        notebook = run_notebook(page, lab, "nofolder.ipynb", expect)
        builders = notebook.locator(".wfk-builder")
        expect(builders).to_have_count(2, timeout=30_000)
        router, empty = builders.nth(0), builders.nth(1)
        expect(router.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
        router.get_by_role("button", name="Save flow spec").click()
        expect(router.locator(".wfk-status")).to_have_text(
            "not saved: cannot write specs/router.yaml (No such file or directory): create the folder "
            "specs, then Save again"
        )
        router.locator("g[data-step='classify'] rect.wfk-node-box").click()
        expect(router.locator(".wfk-panel")).to_contain_text("No tools on offer in this builder.")
        router.screenshot(path=str(tmp_path / "builder-no-folder.png"))
        expect(empty.locator(".wfk-palette")).to_contain_text(
            "No step functions on offer yet: type a name under New step and click Write stub."
        )
        for builder in (router, empty):
            shown = builder.inner_text()
            for call in ("wf.edit", "steps=", "tools=", "path="):
                assert call not in shown, f"the builder speaks of the edit call: {call!r} in {shown!r}"

        # Said once under each cell, to whoever wrote its wf.edit(...) call.
        printed = notebook.locator(".jp-CodeCell").locator(".jp-OutputArea-output[data-mime-type$='stdout']")
        expect(printed).to_have_count(2)
        expect(printed.nth(0)).to_contain_text("Save writes specs/router.yaml, but the folder specs does not exist")
        expect(printed.nth(0)).to_contain_text("no tool registry, so routes can bind no tools: pass tools=")
        expect(printed.nth(0)).not_to_contain_text("steps=")  # the workflow's own functions are on offer
        expect(printed.nth(1)).to_contain_text("no step functions on offer")
        expect(printed.nth(1)).to_contain_text("pass steps=")
    assert not (tmp_path / "specs").exists()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_spaces_around_a_typed_condition_value_are_not_part_of_it(tmp_path: Path, lab: Lab) -> None:
    """ "data " typed (or pasted) as a route's value compares with "data", as the field box and each
    item of an `in` list already did; it was saved as "data ", and the route never matched a
    query of type data (the run took the default). Quoted, spaces are kept: "\\" data\\"" is " data"."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "spaces-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "spaces.ipynb")
        builder.locator("g[data-label-for='route:classify:1'] rect.wfk-edge-label-bg").click()
        panel = builder.locator(".wfk-panel")
        expect(panel).to_contain_text("Route: classify → data_query")
        panel.get_by_label("Condition value").fill("data ")
        panel.get_by_label("Condition value").press("Enter")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
        saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
        assert "data" == saved["routes"]["classify"]["routes"][1]["when"]["value"]
        run = _run(tmp_path / "rag-router.yaml", "What were Q1 sales figures?")
        assert ["classify", "data_query", "generate_answer"] == run.path()

        panel.get_by_label("Condition value").fill('" data"')
        panel.get_by_label("Condition value").press("Enter")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert " data" == saved["routes"]["classify"]["routes"][1]["when"]["value"]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_problems_are_said_in_the_builders_words(tmp_path: Path, lab: Lab) -> None:
    """A step added and left unconnected, and a loop drawn without a bound, are reported with what to
    drag, click and set in the builder; the list said `connect it with flow.edge(...)` and
    `e.g. @flow.step(max_visits=5)`, which a builder user has nowhere to type."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "words-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "words.ipynb")
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.get_by_role("button", name="Add step web_search", exact=True).click()
        expect(problems).to_contain_text(
            "step 'web_search_2' is never reached from the entry step 'classify': drag from the dot under a step "
            "to 'web_search_2' to connect them, or delete 'web_search_2'"
        )
        builder.get_by_role("button", name="Delete step web_search_2").click()
        builder.locator("g[data-step='generate_answer'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        panel.get_by_label("Connect to").select_option("classify")
        panel.get_by_role("button", name="Connect generate_answer to the chosen step").click()
        loop = "the loop classify → code_search → generate_answer → classify has no visit bound"
        expect(problems).to_contain_text(loop)
        expect(problems).to_contain_text("click one of its steps and set its 'Visit bound'")
        expect(problems).not_to_contain_text("flow.")
        # The graph's hover text and the Kind box call a plain edge what the panel does: a connection.
        expect(builder.locator("g[data-edge='edge:code_search:0']")).to_have_attribute(
            "aria-label", "Connection from code_search to generate_answer"
        )
        expect(panel.get_by_label("Kind")).to_contain_text("always (runs in parallel with other connections)")
        builder.screenshot(path=str(tmp_path / "builder-words.png"))


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_step_is_renamed_keeping_its_connections_and_settings(tmp_path: Path, lab: Lab) -> None:
    """Typing a new name in a step's Name box renames it: its route in (condition and tools), its
    connection out, its place and its settings stay, and the saved flow runs down it; a name another
    step has is refused under the box, which keeps what was typed, and nothing changes. A step could
    only be deleted and added again, losing all of that."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "rename-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "rename.ipynb")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
        place = builder.locator("g[data-step='data_query']").get_attribute("transform")
        builder.locator("g[data-step='data_query'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        panel.get_by_label("Timeout per attempt (s)").fill("9")
        panel.get_by_label("Timeout per attempt (s)").press("Enter")
        name = panel.get_by_label("Name", exact=True)
        name.fill("sql_lookup")
        name.press("Enter")
        renamed = builder.locator("g[data-step='sql_lookup']")
        expect(renamed).to_have_attribute("transform", place or "")
        expect(builder.locator("g[data-step='data_query']")).to_have_count(0)
        expect(panel).to_contain_text("Step: sql_lookup")
        expect(builder.locator("g[data-edge='route:classify:1']")).to_have_attribute(
            "aria-label", re.compile(r"to sql_lookup: query_type eq \"data\"; tools: sql_query, file_read")
        )
        expect(builder.locator("g[data-edge='edge:sql_lookup:0']")).to_have_count(1)
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
        builder.screenshot(path=str(tmp_path / "builder-renamed.png"))

        name = panel.get_by_label("Name", exact=True)
        name.fill("web_search")
        name.press("Enter")
        refused = "a step named 'web_search' exists already: choose another name"
        expect(panel.locator(".wfk-field-problem")).to_contain_text(refused)
        expect(panel.get_by_label("Name", exact=True)).to_have_value("web_search")
        expect(panel.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
        expect(builder.locator("g[data-step='sql_lookup']")).to_have_count(1)
        expect(builder.locator("g[data-step='web_search']")).to_have_count(1)
        builder.screenshot(path=str(tmp_path / "builder-rename-refused.png"))

        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert {"fn": "wfkit.examples:data_query", "timeout": 9} == saved["steps"]["sql_lookup"]
    assert "data_query" not in saved["steps"]
    assert {
        "when": {"field": "query_type", "op": "eq", "value": "data"},
        "go": "sql_lookup",
        "tools": [
            "sql_query",
            "file_read",
        ],
    } == saved["routes"]["classify"]["routes"][1]
    assert ["generate_answer"] == saved["edges"]["sql_lookup"]
    assert {"classify", "code_search", "sql_lookup", "web_search", "generate_answer"} == set(
        saved["metadata"]["layout"]
    )
    run = _run(tmp_path / "rag-router.yaml", "What were Q1 sales figures?")
    assert ["classify", "sql_lookup", "generate_answer"] == run.path()


# The text of each route's label as drawn, its lines joined, and the label's hover title.
LABEL_TEXTS = """(svg) => Object.fromEntries([...svg.querySelectorAll("g[data-label-for]")].map((tag) => [
    tag.getAttribute("data-label-for"),
    {
        lines: [...tag.querySelectorAll("text")].map((t) => t.textContent),
        title: tag.querySelector("title") ? tag.querySelector("title").textContent : null,
    },
]))"""


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_long_condition_is_shown_whole_on_its_label(tmp_path: Path, lab: Lab) -> None:
    """A route whose condition is longer than a label's line is drawn on as many lines as it takes,
    none cut, and hovering the label shows the whole route; it was cut at 34 characters
    (`query_type in ["general","factual…`) with no way to read the rest on the graph. After Tidy
    layout no label covers a step or another label."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "long-label-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "long.ipynb")
        builder.locator("g[data-label-for='route:classify:2'] rect.wfk-edge-label-bg").click()
        panel = builder.locator(".wfk-panel")
        expect(panel).to_contain_text("Route: classify → web_search")
        panel.get_by_label("Condition value").fill("general, factual, opinion, small talk")
        panel.get_by_label("Condition value").press("Enter")
        condition = 'query_type in ["general","factual","opinion","small talk"]'
        canvas = builder.locator("svg.wfk-svg")
        expect(builder.locator("g[data-edge='route:classify:2']")).to_have_attribute(
            "aria-label", re.compile(re.escape(condition))
        )
        builder.get_by_role("button", name="Lay out the graph again").click()
        labels = canvas.evaluate(LABEL_TEXTS)
        drawn = labels["route:classify:2"]
        assert not any("…" in line for line in drawn["lines"]), drawn
        assert all(len(line) <= 34 for line in drawn["lines"]), drawn
        assert condition.replace(" ", "") == "".join(drawn["lines"][:-1]).replace(" ", "")  # wrapped at spaces
        assert "tools: web_search" == drawn["lines"][-1]
        assert condition in (drawn["title"] or "")
        assert "tools: web_search, code_interpreter" in (labels["route:classify:0"]["title"] or "")
        assert [] == canvas.evaluate(LABEL_OVERLAPS)
        builder.screenshot(path=str(tmp_path / "builder-long-label.png"))


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_an_approval_reason_cleared_stays_cleared_and_is_asked_for(tmp_path: Path, lab: Lab) -> None:
    """Clearing a gate's Reason box leaves it empty, marked, with the builder's request for a reason
    under it, and Save writes nothing until one is typed; the box silently went back to "needs a
    human's yes", which was saved as if someone had written it for the reviewer."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "reason-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "reason.ipynb")
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.locator("g[data-step='data_query'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        panel.get_by_label("a human approves before it runs").check()
        reason = panel.get_by_label("Reason")
        expect(reason).to_have_value("needs a human's yes")
        reason.fill("  ")
        reason.press("Enter")
        asked = (
            "the approval's Reason of step 'data_query' is empty: type why a human must say yes (the reviewer reads it)"
        )
        expect(panel.locator(".wfk-field-problem")).to_have_text(asked)
        expect(panel.get_by_label("Reason")).to_have_value("")
        expect(panel.get_by_label("Reason")).to_have_attribute("aria-invalid", "true")
        expect(panel.locator(".wfk-form-problems")).to_have_count(0)  # said once, under its box
        expect(problems).to_contain_text(asked)
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_have_text("not saved: 1 problem to fix first")
        builder.screenshot(path=str(tmp_path / "builder-reason-cleared.png"))
        panel.locator(".wfk-field-problem").scroll_into_view_if_needed()
        panel.screenshot(path=str(tmp_path / "builder-reason-cleared-panel.png"))
        assert not (tmp_path / "rag-router.yaml").exists()

        panel.get_by_label("Reason").fill("Queries touching sales data need an analyst")
        panel.get_by_label("Reason").press("Enter")
        expect(problems).to_contain_text("The kernel finds no problems.")
        expect(panel.locator(".wfk-field-problem")).to_have_count(0)
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert {"reason": "Queries touching sales data need an analyst"} == saved["steps"]["data_query"]["approval"]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_switch_turned_off_and_on_again_gives_back_what_was_set(tmp_path: Path, lab: Lab) -> None:
    """A gate unticked and ticked again comes back with its reason and payload (they were replaced by
    "needs a human's yes", which saved cleanly); a route made a plain connection and a route again
    tests its condition and binds its tools again (it came back blank, with no tools)."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "switch-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "switch.ipynb")
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("The kernel finds no problems.")
        panel = builder.locator(".wfk-panel")
        builder.locator("g[data-step='data_query'] rect.wfk-node-box").click()
        gate = panel.get_by_label("a human approves before it runs")
        gate.check()
        panel.get_by_label("Reason").fill("sales data needs an analyst")
        panel.get_by_label("Reason").press("Enter")
        panel.get_by_label("Payload fields (comma-separated)").fill("query")
        panel.get_by_label("Payload fields (comma-separated)").press("Enter")
        gate.uncheck()
        expect(panel.get_by_label("Reason")).to_have_count(0)
        gate.check()
        expect(panel.get_by_label("Reason")).to_have_value("sales data needs an analyst")
        expect(panel.get_by_label("Payload fields (comma-separated)")).to_have_value("query")

        builder.locator("g[data-label-for='route:classify:0'] rect.wfk-edge-label-bg").click()
        panel.get_by_label("Kind").select_option("edge")
        expect(panel).to_contain_text("Connection: classify → code_search")
        panel.get_by_label("Kind").select_option("route")
        expect(panel).to_contain_text("Route: classify → code_search")
        expect(panel.get_by_label("Condition field")).to_have_value("query_type")
        expect(panel.get_by_label("Condition value")).to_have_value("code")
        expect(panel.get_by_label("Tool code_interpreter")).to_be_checked()
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert {"reason": "sales data needs an analyst", "payload": ["query"]} == saved["steps"]["data_query"]["approval"]
    code = [r for r in saved["routes"]["classify"]["routes"] if r["go"] == "code_search"]
    assert [
        {
            "when": {"field": "query_type", "op": "eq", "value": "code"},
            "go": "code_search",
            "tools": ["web_search", "code_interpreter"],
        }
    ] == code


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_deleted_step_still_pointed_to_is_drawn_where_it_was(tmp_path: Path, lab: Lab) -> None:
    """A step deleted while a route still leads to it is drawn as a ghost where it stood: it was put
    under the step the route comes from, on the arrow of that step's default route, which then read
    as the ghost's. Undo brings the step back there."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "ghost-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "ghost.ipynb")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
        step = builder.locator("g[data-step='data_query']")
        place = step.get_attribute("transform")
        step.locator("rect.wfk-node-box").click()
        builder.locator(".wfk-panel").get_by_role("button", name="Delete step data_query").click()
        expect(step).to_have_class(re.compile(r"wfk-missing"))
        expect(builder.locator(".wfk-problems")).to_contain_text("which is not a step")
        expect(step).to_have_attribute("transform", place or "")
        builder.screenshot(path=str(tmp_path / "builder-ghost.png"))
        builder.get_by_role("button", name="Undo (Ctrl+Z)").click()
        expect(step).not_to_have_class(re.compile(r"wfk-missing"))
        expect(step).to_have_attribute("transform", place or "")


BUTTON_NAMES = """(root) => [...root.querySelectorAll("button")].map((b) => [
    b.textContent.trim().replace(/^[+↑↓]\\s*/, ""), b.getAttribute("aria-label") || b.textContent.trim()])"""


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_every_buttons_name_holds_the_words_it_shows(tmp_path: Path, lab: Lab) -> None:
    """Each button's accessible name contains the text on it, so "click Write stub" (voice control)
    or a screen reader's list of buttons finds it: "Write stub" was named "Write a stub function for
    a new step", "Tidy layout" "Lay out the graph again", "Steps" "Show or hide the step functions",
    "Delete connection" on a route "Delete this route"."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "names-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "names.ipynb")
        builder.locator("g[data-step='classify'] rect.wfk-node-box").click()
        expect(builder.locator(".wfk-panel")).to_contain_text("Step: classify")
        names = builder.evaluate(BUTTON_NAMES)
        builder.locator("g[data-label-for='route:classify:0'] rect.wfk-edge-label-bg").click()
        expect(builder.locator(".wfk-panel")).to_contain_text("Route: classify → code_search")
        names += builder.evaluate(BUTTON_NAMES)
        shown = {text for text, _ in names}
        assert {"Write stub", "Tidy layout", "Steps", "Details", "Add connection", "Delete this route"} <= shown
        assert [] == [(text, name) for text, name in names if text.lower() not in name.lower()]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_save_says_so_when_the_kernel_does_not_answer(tmp_path: Path, lab: Lab) -> None:
    """The notebook's kernel shut down (Kernel menu), an edit, Save: nothing came back, the status
    line kept "unsaved changes" as if Save had not been clicked, and the problems list its "no
    problems". It now says the kernel does not answer, and what to do; the list, that nothing is checked."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "no-kernel-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "no-kernel.ipynb")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click()
        page.locator("li[data-command='kernelmenu:shutdown']").click()
        expect(page.get_by_role("contentinfo", name="Bottom Panel").get_by_text("No Kernel")).to_be_visible()
        builder.locator("g[data-step='classify'] rect.wfk-node-box").click()
        timeout = builder.locator(".wfk-panel").get_by_label("Timeout per attempt (s)")
        timeout.fill("30")
        timeout.press("Enter")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_have_text(
            "not saved: the kernel does not answer (it may have stopped: the notebook's top right says). Start it "
            "(Kernel menu), then run this builder's cell again: edits not saved here are lost, so note them first",
            timeout=10_000,
        )
        unchecked = "Not checked: the kernel does not answer, so the edits since it last did are not checked."
        expect(builder.locator(".wfk-problems")).to_have_text(unchecked)
        timeout.fill("thirty")
        timeout.press("Enter")  # an edit after: still nobody checks it, and the list keeps saying so
        expect(builder.locator("g[data-step='classify']")).to_contain_text('timeout "thirty"')
        expect(builder.locator(".wfk-problems")).to_have_text(unchecked)
        builder.screenshot(path=str(tmp_path / "builder-no-kernel.png"))
    assert not (tmp_path / "rag-router.yaml").exists()


LONG_LIST = [
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot"),
    *("golf", "hotel", "india", "juliett", "kilo", "lima"),
]
MANY_VALUES = (
    "import wfkit as wf\n\n"
    "def classify(state):\n    return {'kind': 'alpha'}\n\n"
    "def handle(state):\n    return {}\n\n"
    "def other(state):\n    return {}\n\n"
    "flow = wf.Workflow('many')\n"
    "flow.step(classify)\nflow.step(handle)\nflow.step(other)\n"
    f"flow.route('classify', wf.when('kind', 'in', {LONG_LIST!r}) >> wf.go('handle'), default=wf.go('other'))\n"
    "wf.edit(flow, path='many.yaml')"
)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_long_in_list_is_shown_whole_in_its_value_box_and_edited_there(tmp_path: Path, lab: Lab) -> None:
    """A route testing `kind in [12 values]` shows all twelve in its value box, none scrolled out of
    sight (the one-line box showed "alpha, bravo, c"); a thirteenth typed at its end is saved."""
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(MANY_VALUES)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, tmp_path / "many.ipynb")
    with lab_page(lab, {"width": 1600, "height": 1100}, tmp_path / "many-failure.png") as page:
        builder = run_notebook(page, lab, "many.ipynb", expect).locator(".wfk-builder")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.", timeout=30_000)
        builder.scroll_into_view_if_needed()
        builder.locator("g[data-label-for='route:classify:0'] rect.wfk-edge-label-bg").click()
        panel = builder.locator(".wfk-panel")
        expect(panel).to_contain_text("Route: classify → handle")
        box = panel.get_by_label("Condition value")
        expect(box).to_have_value(", ".join(LONG_LIST))
        hidden = box.evaluate("e => [e.scrollWidth - e.clientWidth, e.scrollHeight - e.clientHeight]")
        assert [0, 0] == [max(0, int(h)) for h in hidden], f"text out of sight in the value box: {hidden}"
        inside, shown = _box(panel), _box(box)
        assert shown["x"] + shown["width"] <= inside["x"] + inside["width"]  # within the panel, not cut by it
        builder.screenshot(path=str(tmp_path / "builder-long-in-list.png"))

        box.click()
        page.keyboard.press("Control+End")  # the end of the text, not of its first line
        page.keyboard.type(", mike")
        page.keyboard.press("Enter")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved many.yaml")
        expect(panel.get_by_label("Condition value")).to_have_value(", ".join([*LONG_LIST, "mike"]))
    saved = __import__("yaml").safe_load((tmp_path / "many.yaml").read_text())
    assert [*LONG_LIST, "mike"] == saved["routes"]["classify"]["routes"][0]["when"]["value"]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_what_is_typed_in_a_number_box_is_kept_and_refused_when_not_a_number(tmp_path: Path, lab: Lab) -> None:
    """A timeout typed key by key as "1,5" (a decimal comma) stays "1,5" in its box, the kernel says
    to write it with a dot, and Save writes nothing; 1.5 typed then is saved. The number box let
    chromium drop the comma, and 15 s (ten times the timeout meant) was saved without a word."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "comma-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "comma.ipynb")
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.locator("g[data-step='classify'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        timeout = panel.get_by_label("Timeout per attempt (s)")
        timeout.click()
        page.keyboard.type("1,5")  # as a person types it, key by key
        page.keyboard.press("Enter")
        expect(problems).to_contain_text(
            "Timeout per attempt (s) of step 'classify' is '1,5': type a number, with a dot for decimals (1.5)"
        )
        expect(timeout).to_have_value("1,5")
        expect(builder.locator("g[data-step='classify'] .wfk-node-marks")).to_have_text('timeout "1,5"?')
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_have_text("not saved: 1 problem to fix first")
        builder.screenshot(path=str(tmp_path / "builder-decimal-comma.png"))
        assert not (tmp_path / "rag-router.yaml").exists()

        timeout.fill("1.5")
        timeout.press("Enter")
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert 1.5 == saved["steps"]["classify"]["timeout"]


TYPED_VALUES = (
    "import wfkit as wf\n\n"
    "def classify(state):\n    return {}\n\n"
    "def local(state):\n    return {'went': 'local'}\n\n"
    "def other(state):\n    return {'went': 'other'}\n\n"
    "flow = wf.Workflow('zips')\n"
    "flow.step(classify)\nflow.step(local)\nflow.step(other)\n"
    "flow.route('classify', wf.when('zip', 'eq', '10001') >> wf.go('local'),\n"
    "           wf.when('tier', 'in', [1, 2]) >> wf.go('local'), default=wf.go('other'))\n"
    "wf.edit(flow, path='zips.yaml')"
)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_condition_value_is_edited_as_the_type_it_is(tmp_path: Path, lab: Lab) -> None:
    """A route testing `zip eq "10001"` (text) shows "10001" quoted in its value box, so editing a
    digit keeps it text; `tier in [1, 2]` (numbers) shows "1, 2", and ", 3" typed at its end adds the
    number 3, as 3 typed alone is read. The box showed 10001 bare, and the edit saved the number
    10002, which no zip in the state equals; it showed [1,2], and ", 3" saved ["[1", "2]", "3"]."""
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(TYPED_VALUES)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, tmp_path / "zips.ipynb")
    with lab_page(lab, {"width": 1600, "height": 1100}, tmp_path / "typed-failure.png") as page:
        builder = run_notebook(page, lab, "zips.ipynb", expect).locator(".wfk-builder")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.", timeout=30_000)
        builder.scroll_into_view_if_needed()
        panel = builder.locator(".wfk-panel")

        builder.locator("g[data-label-for='route:classify:0'] rect.wfk-edge-label-bg").click()
        expect(panel).to_contain_text("Route: classify → local")
        box = panel.get_by_label("Condition value")
        expect(box).to_have_value('"10001"')
        box.click()
        page.keyboard.press("Control+End")
        page.keyboard.press("ArrowLeft")  # inside the quotes: the last digit becomes a 2
        page.keyboard.press("Backspace")
        page.keyboard.type("2")
        page.keyboard.press("Enter")
        expect(builder.locator("g[data-edge='route:classify:0']")).to_have_attribute(
            "aria-label", re.compile(re.escape('zip eq "10002"'))
        )

        builder.locator("g[data-label-for='route:classify:1'] rect.wfk-edge-label-bg").click()
        expect(panel).to_contain_text("Route: classify → local")
        box = panel.get_by_label("Condition value")
        expect(box).to_have_value("1, 2")
        box.click()
        page.keyboard.press("Control+End")
        page.keyboard.type(", 3")
        page.keyboard.press("Enter")
        expect(builder.locator("g[data-edge='route:classify:1']")).to_have_attribute(
            "aria-label", re.compile(re.escape("tier in [1,2,3]"))
        )
        builder.screenshot(path=str(tmp_path / "builder-typed-values.png"))
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved zips.yaml")
    saved = wf.Workflow.from_spec(tmp_path / "zips.yaml", steps=_zip_steps())
    routes = saved.to_spec()["routes"]["classify"]["routes"]
    assert {"field": "zip", "op": "eq", "value": "10002"} == routes[0]["when"]
    assert {"field": "tier", "op": "in", "value": [1, 2, 3]} == routes[1]["when"]
    assert "local" == saved.run({"zip": "10002"}, workspace=False).state["went"]
    assert "local" == saved.run({"tier": 3}, workspace=False).state["went"]


def _zip_steps() -> dict[str, Any]:
    """The functions of TYPED_VALUES, for loading the spec it saves."""
    namespace: dict[str, Any] = {}
    exec(TYPED_VALUES.split("flow = ")[0], namespace)
    return {name: namespace[name] for name in ("classify", "local", "other")}


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_a_gate_bound_typed_as_a_written_number_is_refused_at_its_box(tmp_path: Path, lab: Lab) -> None:
    """A gate asking only when `rows gt 1,000` (a number as a person writes it): the value box keeps
    "1,000", is marked with what to type instead, and Save writes nothing; 1000 typed then is saved
    as the number. The builder saved the text "1,000", which the number of rows cannot be compared
    with: every run reaching the gate failed there."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "written-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "written.ipynb")
        problems = builder.locator(".wfk-problems")
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.locator("g[data-step='data_query'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        panel.get_by_text("a human approves before it runs").click()
        panel.get_by_text("only when a condition holds").click()
        panel.get_by_label("Condition field").fill("rows")
        panel.get_by_label("Condition field").press("Enter")
        box = panel.get_by_label("Condition value")
        box.fill("1,000")
        box.press("Enter")
        said = (
            "the gate condition of step 'data_query' tests 'rows' with 'gt', and its value box holds the text "
            "'1,000', which orders as text, not as a number: type the number alone, 1000"
        )
        expect(panel.locator(".wfk-field-problem")).to_have_text(said)
        expect(panel.get_by_label("Condition value")).to_have_attribute("aria-invalid", "true")
        expect(panel.get_by_label("Condition value")).to_have_value("1,000")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_have_text("not saved: 1 problem to fix first")
        builder.screenshot(path=str(tmp_path / "builder-written-number.png"))
        assert not (tmp_path / "rag-router.yaml").exists()

        panel.get_by_label("Condition value").fill("1000")
        panel.get_by_label("Condition value").press("Enter")
        expect(problems).to_contain_text("The kernel finds no problems.")
        builder.get_by_role("button", name="Save flow spec").click()
        expect(builder.locator(".wfk-status")).to_contain_text("saved rag-router.yaml")
    saved = __import__("yaml").safe_load((tmp_path / "rag-router.yaml").read_text())
    assert {"field": "rows", "op": "gt", "value": 1000} == saved["steps"]["data_query"]["approval"]["when"]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it"
)
def test_on_reject_offers_only_what_a_rejection_can_go_to(tmp_path: Path, lab: Lab) -> None:
    """A gate's "On reject go to" offers (none), which fails the run, and the steps; not "end
    (finish the branch)", which the kernel refuses there: picked, it said "goes to '__end__' when
    rejected, which is not a step". On failure go to, where the kernel takes the end, keeps it."""
    from playwright.sync_api import expect

    with lab_page(lab, {"width": 1800, "height": 1100}, tmp_path / "reject-failure.png") as page:
        builder = _router_builder(page, lab, tmp_path / "reject.ipynb")
        builder.locator("g[data-step='data_query'] rect.wfk-node-box").click()
        panel = builder.locator(".wfk-panel")
        panel.get_by_text("a human approves before it runs").click()
        on_reject = panel.get_by_label("On reject go to")
        expect(on_reject).to_be_visible()
        offered = on_reject.locator("option").all_inner_texts()
        steps = ["classify", "code_search", "data_query", "web_search", "generate_answer"]
        assert ["(none)", *steps] == offered
        fallback = panel.get_by_label("On failure go to").locator("option").all_inner_texts()
        assert ["(none)", *steps, "end (finish the branch)"] == fallback
        on_reject.select_option("generate_answer")
        expect(builder.locator(".wfk-problems")).to_contain_text("The kernel finds no problems.")
