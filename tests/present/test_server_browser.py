"""The web page in headless Chromium (Playwright), against the real app served by uvicorn."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bannermatch.present.server import create_app
from support import ROOT
from support.servers import build_collection, running_server

CHROMIUM = Path(os.environ.get("BANNERMATCH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, covers_dir: Path) -> Iterator[str]:
    root = build_collection(tmp_path_factory, covers_dir)
    with running_server(create_app(root)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"needs Chromium at {CHROMIUM}: run scripts/setup.sh test as root "
            "(installs Debian's chromium) or set BANNERMATCH_CHROMIUM"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs playwright (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def _cards(page) -> int:  # type: ignore[no-untyped-def]
    return page.locator("#grid .card").count()


def test_search_pick_browse_back_and_upload(page, base_url: str, covers_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(base_url + "/")
    expect(page.locator("#grid .card").first).to_be_visible()  # featured items
    expect(page.locator("#grid-title")).to_have_text("Featured")

    # type part of a name; the dropdown offers it; pick it with the mouse
    box = page.get_by_role("combobox", name="Search by name or id")
    box.press_sequentially("porta", delay=40)
    listbox = page.get_by_role("listbox")
    expect(listbox).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")
    option = page.get_by_role("option").filter(has_text="Portal 2")
    expect(option).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-autocomplete.png"))
    option.click()
    expect(page).to_have_url(base_url + "/?id=620")
    expect(page.locator("#query-name")).to_have_text("Portal 2")
    expect(page.locator("#grid .card")).to_have_count(10)
    expect(page.locator("#grid .card .score").first).to_contain_text("similarity")
    expect(page.get_by_role("link", name="Steam store")).to_have_attribute(
        "href", "https://store.steampowered.com/app/620/"
    )
    expect(listbox).to_be_hidden()
    expect(page.locator("#pager")).to_be_hidden()

    # click a result: it becomes the query, and the URL follows
    first = page.locator("#grid .card a").first
    clicked_id = first.get_attribute("data-id")
    clicked_name = first.locator(".name").inner_text()
    first.click()
    expect(page.locator("#query-name")).to_have_text(clicked_name)
    assert page.url.endswith(f"?id={clicked_id}")
    expect(page.locator("#grid .card")).to_have_count(10)

    # the back button returns to the previous query
    page.go_back()
    expect(page).to_have_url(base_url + "/?id=620")
    expect(page.locator("#query-name")).to_have_text("Portal 2")

    # keyboard: arrows and Enter choose, Escape closes
    box.fill("")
    box.press_sequentially("dota", delay=40)
    expect(page.get_by_role("option").first).to_contain_text("Dota 2")
    box.press("ArrowDown")
    expect(page.get_by_role("option").first).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", "option-0")
    box.press("Enter")
    expect(page).to_have_url(base_url + "/?id=570")
    expect(page.locator("#query-name")).to_have_text("Dota 2")
    box.fill("")
    box.press_sequentially("assass", delay=40)
    expect(listbox).to_be_visible()
    box.press("Escape")
    expect(listbox).to_be_hidden()

    # an id typed and submitted
    box.fill("400")
    box.press("Enter")
    expect(page).to_have_url(base_url + "/?id=400")
    expect(page.locator("#query-name")).to_have_text("Portal")

    # search by image: pick a file
    cover = covers_dir / "images" / "abzu-1.jpg"
    page.set_input_files("#file", str(cover))
    expect(page).to_have_url(base_url + "/?view=image")
    expect(page.locator("#grid-title")).to_have_text("Banners that look like your image")
    expect(page.locator("#grid .card").first).to_be_visible()
    assert _cards(page) >= 10
    expect(page.locator("#grid .card .name").first).to_have_text("Abzu 1")
    expect(page.locator("#n-controls")).to_be_hidden()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-image-search.png"), full_page=True)
    page.go_back()
    expect(page).to_have_url(base_url + "/?id=400")
    expect(page.locator("#query-name")).to_have_text("Portal")
    page.goto(base_url + "/?id=620")
    expect(page.locator("#grid .card")).to_have_count(10)
    page.locator("#grid .card img").last.scroll_into_view_if_needed()
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth)"
    )
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)


def test_unique_view_and_pages(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(base_url + "/")
    page.get_by_role("link", name="Most unique").click()
    expect(page).to_have_url(base_url + "/?view=unique")
    expect(page.locator("#grid-title")).to_contain_text("Most unique")
    expect(page.locator("#grid .card").first).to_contain_text("nearest:")
    assert _cards(page) > 10
    page.locator("#grid .card a").first.click()
    expect(page.locator("#query")).to_be_visible()
    page.go_back()
    expect(page).to_have_url(base_url + "/?view=unique")
    expect(page.locator("#grid .card").first).to_contain_text("nearest:")


def test_describe_it_text_search(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    """The embedded model cannot read text: the words pick ImageNet classes, named."""
    from playwright.sync_api import expect

    page.goto(base_url + "/")
    page.get_by_role("link", name="Describe it").click()
    expect(page).to_have_url(base_url + "/?view=text")
    expect(page.locator("#status")).to_contain_text("cannot read text")
    box = page.get_by_label("Words describing the picture")
    box.fill("sports car")
    box.press("Enter")
    expect(page.locator("#grid .card")).to_have_count(10)
    expect(page.locator("#grid-title")).to_contain_text("sports car")
    expect(page.locator("#status")).to_contain_text("ImageNet classes matching your words")
    box.fill("xyzzy")
    box.press("Enter")
    expect(page.locator("#status")).to_contain_text("no ImageNet class matches")


def test_drop_an_image_and_bad_uploads(page, base_url: str, covers_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(base_url + "/")
    data = (covers_dir / "images" / "abzu-1.jpg").read_bytes()
    page.evaluate(
        """(bytes) => {
            const file = new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"});
            const dt = new DataTransfer();
            dt.items.add(file);
            window.dispatchEvent(new DragEvent("dragenter", {dataTransfer: dt}));
            window.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, cancelable: true}));
        }""",
        list(data),
    )
    expect(page).to_have_url(base_url + "/?view=image")
    expect(page.locator("#query-name")).to_have_text("dropped.jpg")
    expect(page.locator("#grid .card .name").first).to_have_text("Abzu 1")
    expect(page.locator("#drop")).to_be_hidden()
    # a broken image: the reason is shown, the page stays
    page.set_input_files(
        "#file", files=[{"name": "bad.png", "mimeType": "image/png", "buffer": b"not a png"}]
    )
    expect(page.locator("#status")).to_contain_text("Image search failed")
    expect(page.locator("#status")).to_contain_text("not a recognised image format")


def test_phone_sized_screen(browser, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base_url + "/?id=620")
    expect(page.locator("#grid .card")).to_have_count(10)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px wide)"
    columns = page.evaluate(
        "getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length"
    )
    assert 2 <= columns <= 4
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=False)
    context.close()


def test_unknown_id_in_url_shows_the_reason(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(base_url + "/?id=nope")
    expect(page.locator("#status")).to_contain_text("no item with id 'nope'")
    expect(page.locator("#status")).to_have_class("status error")


def test_nested_ids_round_trip(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(base_url + "/?id=abzu-0")
    link = page.locator('#grid .card a[data-id="extra/abzu-0"]')
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(base_url + "/?id=extra%2Fabzu-0")
    expect(page.locator("#query-img")).to_have_attribute("src", "/api/items/extra%2Fabzu-0/image")
    expect(page.locator("#query-meta")).to_have_text("id extra/abzu-0")


@pytest.mark.parametrize("typed", ["portl 2", "dota", "abzu"])
def test_typed_text_picks_what_the_api_picks(page, base_url: str, typed: str) -> None:  # type: ignore[no-untyped-def]
    import httpx
    from playwright.sync_api import expect

    first = httpx.get(f"{base_url}/api/names", params={"q": typed, "limit": 1}).json()
    want = first["results"][0]
    page.goto(base_url + "/")
    box = page.get_by_role("combobox", name="Search by name or id")
    box.fill(typed)
    box.press("Enter")
    expect(page).to_have_url(f"{base_url}/?id={want['id']}")
    expect(page.locator("#query-name")).to_have_text(want["name"])
    steam = page.get_by_role("link", name="Steam store")
    if want["store_url"] is None:  # a user's own picture: no Steam links
        expect(steam).to_have_count(0)
        expect(page.get_by_role("link", name="SteamDB")).to_have_count(0)
    else:
        expect(steam).to_have_attribute("href", want["store_url"])


def test_map_renders_zooms_hovers_and_click_opens_the_similar_view(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(base_url + "/?view=map")
    canvas = page.locator("#map")
    expect(canvas).to_be_visible()
    # the first request computes the map (UMAP compiles with numba first: seconds)
    expect(canvas).to_have_attribute("data-labels", "loaded", timeout=120_000)
    count = page.evaluate("bannermatchMap.state.count")
    assert count == page.evaluate("fetch('api/info').then(r => r.json()).then(i => i.count)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "map-whole.png"))
    # the canvas shows dots: pixels that are not the background
    lit = page.evaluate(
        """() => { const c = document.getElementById('map');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 100) n++; return n; }"""
    )
    assert lit > count  # every item drawn as a dot of several pixels

    # zoom in with the wheel on the first item: the scale grows and thumbnails appear
    scale = float(canvas.get_attribute("data-scale"))
    target = page.evaluate("bannermatchMap.point(0)")
    page.mouse.move(target["x"], target["y"])
    for _ in range(6):
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(50)
    expect(canvas).not_to_have_attribute("data-thumbs", "0")
    assert float(canvas.get_attribute("data-scale")) > 4 * scale
    page.wait_for_timeout(500)  # let the thumbnails arrive
    page.screenshot(path=str(ARTIFACTS / "map-zoomed.png"))

    # drag pans the view
    before = page.evaluate("bannermatchMap.point(0)")
    page.mouse.move(before["x"], before["y"] + 40)
    page.mouse.down()
    page.mouse.move(before["x"] + 60, before["y"] + 40, steps=5)
    page.mouse.up()
    after = page.evaluate("bannermatchMap.point(0)")
    assert abs(after["x"] - before["x"] - 60) < 2

    # hover shows the name; a click opens the item's similar view
    target = page.evaluate("bannermatchMap.point(0)")
    name = page.evaluate("bannermatchMap.state.names[0]")
    page.mouse.move(target["x"], target["y"])
    expect(page.locator("#map-tip")).to_have_text(name)
    page.mouse.click(target["x"], target["y"])
    expect(page).to_have_url(f"{base_url}/?id={target['id']}")
    expect(page.locator("#query-name")).to_have_text(name)
    expect(page.locator("#map-view")).to_be_hidden()
    expect(page.locator("#grid .card").first).to_be_visible()
    page.go_back()
    expect(canvas).to_be_visible()


def test_mirror_and_flip_toggles(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    """The toggles put mirror=1 / flip=1 in the URL, and the grid is what the API gives."""
    import httpx
    from playwright.sync_api import expect

    page.goto(base_url + "/?id=620")
    expect(page.locator("#grid .card")).to_have_count(10)
    page.get_by_role("checkbox", name="Flipped").check()
    expect(page).to_have_url(base_url + "/?id=620&flip=1")
    expect(page.locator("#grid-title")).to_have_text("Most similar to Portal 2 (flipped)")
    expect(page.locator("#query-img")).to_have_class("flipped")
    api = httpx.get(f"{base_url}/api/items/620/similar?n=10&flip=1").json()
    expect(page.locator("#grid .card a")).to_have_count(10)
    shown = page.locator("#grid .card a").evaluate_all("as => as.map(a => a.dataset.id)")
    assert shown == [h["id"] for h in api["results"]]
    page.get_by_role("checkbox", name="Mirrored").check()
    expect(page).to_have_url(base_url + "/?id=620&mirror=1&flip=1")
    expect(page.locator("#grid-title")).to_contain_text("(mirrored and flipped)")
    page.go_back()
    expect(page.get_by_role("checkbox", name="Mirrored")).not_to_be_checked()
    expect(page.get_by_role("checkbox", name="Flipped")).to_be_checked()
    page.get_by_role("checkbox", name="Flipped").uncheck()
    expect(page).to_have_url(base_url + "/?id=620")
    expect(page.locator("#grid-title")).to_have_text("Most similar to Portal 2")


def test_title_weight_control(browser, tmp_path_factory, skimage_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """With banner text read, the page offers the title's weight (?tw=W): the same title on
    other art comes first; without banner text the control is hidden."""
    import httpx
    from playwright.sync_api import expect

    from support.servers import build_titled_collection

    root = build_titled_collection(tmp_path_factory.mktemp("titled"), skimage_dir)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    with running_server(create_app(root)) as base:
        page.goto(base + "/?id=a-starfall&n=4")
        first = page.locator("#grid .card a").first
        expect(first).to_have_attribute("data-id", "a-moonrise")  # the same art
        page.get_by_label("Title").select_option("0.75")
        expect(page).to_have_url(base + "/?id=a-starfall&n=4&tw=0.75")
        expect(page.locator("#grid-title")).to_contain_text("(with the title)")
        expect(first).to_have_attribute("data-id", "b-starfall")  # the same title
        api = httpx.get(f"{base}/api/items/a-starfall/similar?n=4&text_weight=0.75").json()
        shown = page.locator("#grid .card a").evaluate_all("as => as.map(a => a.dataset.id)")
        assert shown == [h["id"] for h in api["results"]]
        _upload_with_the_title(page, root.parent / "upload.png", skimage_dir)
    context.close()


def _upload_with_the_title(page, path: Path, skimage_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """An uploaded banner (coffee under chelsea's title): by the picture, coffee; with the
    title counting, chelsea, and the text the server read is shown."""
    from PIL import Image
    from playwright.sync_api import expect

    from support.servers import with_title

    art = Image.open(skimage_dir / "coffee.png").convert("RGB").resize((342, 482))
    with_title(art, "WHISKERS").save(path)
    page.set_input_files("#file", str(path))
    first = page.locator("#grid .card a").first
    expect(page.locator("#grid-title")).to_have_text("Banners that look like your image")
    expect(first).to_have_attribute("data-id", "coffee")
    expect(page.get_by_label("Mirrored")).to_be_hidden()  # only the title applies
    page.get_by_label("Title", exact=True).select_option("0.75")
    expect(page.locator("#grid-title")).to_contain_text("(with the title)")
    expect(first).to_have_attribute("data-id", "chelsea")
    expect(page.locator("#query-meta")).to_contain_text("WHISKERS")
    expect(page.get_by_label("Title", exact=True)).to_have_value("0.75")


def test_title_weight_hidden_without_banner_text(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(base_url + "/?id=620")
    expect(page.locator("#grid .card")).to_have_count(10)
    expect(page.locator("#title-weight-control")).to_be_hidden()
