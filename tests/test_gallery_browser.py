"""The gallery pages in a real browser (headless Chromium through Selenium and Debian's chromium-driver):
every video plays (readyState >= 2) with its clip's duration, one card's controls move both its videos,
the category filter and the sort act on the cards, and planted scripts stay text.

Without Chromium the tests skip, saying what to install; under CI (`CI` set, as .ci/run runs) they fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers_gallery import JUDGED, SAMPLES, edit_folder, vie_reports

from sama_cli.eval import browser
from sama_cli.eval.gallery import edit_page
from sama_cli.eval.report import compare_page

TIMEOUT = 20.0  # seconds for any one wait; a page of these clips loads in well under one


@pytest.fixture(scope="module")
def driver():
    found = browser.find()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"headless Chromium is required under CI: {found}")
        pytest.skip(found)
    with browser.headless(1280, 2400) as d:
        yield d


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gallery")
    reports = vie_reports(root)
    batch, rows, done, failed = edit_folder(root, reports)
    return {"bench": reports["a"] / "index.html", "bench_b": reports["b"] / "index.html",
            "compare": compare_page(reports["a"], reports["b"], root / "compare"),
            "edit": edit_page(batch, rows, done, failed)}


def videos_of(driver) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('video')].map(v => ({
            card: v.closest('.card').id, readyState: v.readyState, duration: v.duration,
            error: v.error && v.error.code, time: v.currentTime, paused: v.paused}));""")


def load_all_videos(driver, page: Path) -> list[dict]:
    """Open `page`, bring every card on screen (clips load as their card nears the screen) and wait until
    each video has its current frame."""
    browser.open_page(driver, page)
    browser.wait_until(driver, "return document.readyState === 'complete'", TIMEOUT)
    driver.execute_script("document.querySelectorAll('.card').forEach(c => c.scrollIntoView())")
    browser.wait_until(driver, "return [...document.querySelectorAll('video')]"
                       ".every(v => v.readyState >= 2 || v.error)", TIMEOUT, f"videos of {page} did not load")
    return videos_of(driver)


@pytest.mark.parametrize("name", ["bench", "bench_b", "compare", "edit"])
def test_every_video_plays_with_its_clips_duration(driver, pages, name) -> None:
    videos = load_all_videos(driver, pages[name])
    # bench and compare: cards a, b, c (d has no edit: only its source); edit: a, b and the failed row e
    # (its source only): the source is c's clip
    expected_cards = {"bench": "abcd", "bench_b": "abcd", "compare": "abcd", "edit": "abe"}[name]
    assert {v["card"] for v in videos} == {f"s-{c}" for c in expected_cards}
    for v in videos:
        sid = v["card"][2:]
        assert v["error"] is None and v["readyState"] >= 2, v
        frames, fps = SAMPLES["c" if sid == "e" else sid][:2]
        assert abs(v["duration"] - frames / fps) < 0.5 / fps, (v, frames, fps)


def test_one_control_moves_both_videos_of_a_card(driver, pages) -> None:
    load_all_videos(driver, pages["bench"])
    card = "s-b"
    both = f"[...document.querySelectorAll('#{card} video')]"
    others = "[...document.querySelectorAll('.card:not(#s-b) video')]"
    assert driver.execute_script(f"return {both}.length") == 2
    # scrub to 0.75 s (of b's 1.5 s): both videos seek there
    driver.execute_script(f"const s = document.querySelector('#{card} input.scrub'); s.value = 0.75; "
                          "s.dispatchEvent(new Event('input'))")
    browser.wait_until(driver, f"return {both}.every(v => !v.seeking && Math.abs(v.currentTime - 0.75) < 1e-3)",
                       TIMEOUT, "scrubbing did not move both videos")
    # play: both run on from there; pause: both stop; the other cards' videos never move
    driver.find_element("css selector", f"#{card} button.play").click()
    browser.wait_until(driver, f"return {both}.every(v => !v.paused && v.currentTime > 0.8)", TIMEOUT,
                       "play did not start both videos")
    driver.find_element("css selector", f"#{card} button.play").click()
    browser.wait_until(driver, f"return {both}.every(v => v.paused)", TIMEOUT, "pause did not stop both videos")
    assert driver.execute_script(f"return {others}.every(v => v.paused && v.currentTime === 0)")


def test_category_filter_hides_the_other_cards_and_sort_orders_by_score(driver, pages) -> None:
    from selenium.webdriver.support.ui import Select

    load_all_videos(driver, pages["bench"])
    cards = lambda: {c.get_attribute("id"): c.is_displayed()  # noqa: E731
                     for c in driver.find_elements("css selector", ".card")}
    assert all(cards().values())
    Select(driver.find_element("id", "category")).select_by_value("remove")
    assert cards() == {"s-a": False, "s-b": True, "s-c": False, "s-d": False}
    assert driver.find_element("id", "shown").text == "1 of 4 shown"
    Select(driver.find_element("id", "category")).select_by_value("")
    assert all(cards().values())
    order = lambda: [c.get_attribute("id") for c in driver.find_elements("css selector", ".card")]  # noqa: E731
    high_first = [f"s-{k}" for k in sorted(JUDGED, key=JUDGED.get, reverse=True)]
    Select(driver.find_element("id", "sort")).select_by_value("desc")
    assert order()[:2] == high_first and set(order()[2:]) == {"s-c", "s-d"}  # unscored (failed) last
    Select(driver.find_element("id", "sort")).select_by_value("asc")
    assert order()[:2] == high_first[::-1]
    Select(driver.find_element("id", "sort")).select_by_value("order")
    assert order() == ["s-a", "s-b", "s-c", "s-d"]


@pytest.mark.parametrize("name", ["bench", "compare", "edit"])
def test_planted_scripts_in_an_instruction_and_a_judge_reply_stay_text(driver, pages, name) -> None:
    load_all_videos(driver, pages[name])
    flags = driver.execute_script("return [window.__pwnedInstruction, window.__pwnedJudge]")
    assert flags == [None, None]
    card = driver.find_element("id", "s-a")
    assert "<script>window.__pwnedInstruction = true</script>" in card.text  # shown as the user wrote it
    if name == "bench":  # the judge's reason (a) and its unparseable reply (c) are on the page, as text
        assert '<img src=x onerror="window.__pwnedJudge = true">' in card.text
        driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
        assert "<script>window.__pwnedJudge = true</script>" in driver.find_element("id", "s-c").text


def test_a_cards_anchor_links_to_it(driver, pages) -> None:
    browser.open_page(driver, pages["bench"])
    driver.get(pages["bench"].resolve().as_uri() + "#s-c")
    browser.wait_until(driver, "return document.readyState === 'complete'", TIMEOUT)
    assert driver.execute_script("return document.querySelector(':target').id") == "s-c"


def test_a_screenshot_is_a_png_of_the_page(pages, tmp_path: Path, driver) -> None:
    png = browser.screenshot(pages["bench"], tmp_path / "page.png", 800, 600)
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (800, 600)


def test_the_demo_prints_its_pages_and_saves_a_screenshot(pages, tmp_path: Path, driver, capsys) -> None:
    import shutil

    from sama_cli.toy import demo

    shutil.copytree(pages["bench"].parent, tmp_path / "report")  # the report's clips stay where they were
    shots = demo.pages(tmp_path)
    assert shots == [tmp_path / "report" / "index.png"] and shots[0].stat().st_size > 0
    said = capsys.readouterr().err
    assert f"page: {tmp_path / 'report' / 'index.html'}" in said and "screenshot of the page" in said
