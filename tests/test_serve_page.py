"""The page of ``ffkit serve`` driven in headless Chromium (Selenium with Debian's chromium-driver).

A real server on a loopback port (test_serve's helpers and small models, a token, and a second
variant set: an INT8 copy of the embedder made here with onnxruntime's dynamic quantization) and a
real browser started here, both stopped by the fixtures. What the page shows is checked against
``ffkit swap`` run on the same files (bytes), against the option declaration (every request
option has a labelled field) and against the CLI's own error line. Every test saves a screenshot
in its temp folder and checks that the page asked nothing of any other origin (the browser's
network log). ``.ci/run`` installs ``chromium`` and ``chromium-driver``; without them these tests
skip, saying so.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, ffkit
from runtime_helpers import FAST_ARGS
from test_serve import FAST_FIELDS, _tiny_video, cli_swap, folder, images, start_server, stop_server  # noqa: F401

from ffkit.runtime.swap_options import options_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(f"no Chromium here ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver "
                "(.ci/run does)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install -e '.[test]'")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TOKEN = "page-" + uuid.uuid4().hex
#: How long the page may take for one step (a swap on 2 busy cores, a short video job).
STEP_S = 90
#: Where two screenshots are copied for a reader of the test run.
SHOTS = Path("/tmp/ffkit-page-shots")
WIDE = (1100, 1400)


# ---------------------------------------------------------------- the server and the browser

@pytest.fixture(scope="module")
def page_folder(folder):  # noqa: F811 - test_serve's fixture
    """test_serve's models and an INT8 embedder (``arcface_iresnet18.int8.onnx``, recorded as int8)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = folder / "arcface_iresnet18.int8.onnx"
    quantize_dynamic(str((folder / "arcface_iresnet18.fp32.onnx").resolve()), str(out), weight_type=QuantType.QInt8)
    model = onnx.load(str(out))
    for prop in model.metadata_props:
        if prop.key == "ffkit.variant":
            prop.value = "int8"
    onnx.save(model, str(out))
    return folder


@pytest.fixture(scope="module")
def page_server(page_folder, tmp_path_factory):
    srv = start_server(page_folder, tmp_path_factory.mktemp("serve-page") / "work", "--token", TOKEN,
                       "--compare-variant", "int8", "--retention-s", 300)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("page-downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDE[0]},{WIDE[1]}", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # the driver's path is given: Selenium Manager downloads nothing
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


# ---------------------------------------------------------------- helpers

def wait(driver, condition, timeout: float = STEP_S):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def el(driver, id_: str):
    return driver.find_element(By.ID, id_)


def shown(driver, id_: str) -> bool:
    found = driver.find_elements(By.ID, id_)
    return bool(found) and found[0].is_displayed()


def open_page(driver, server, token: str = TOKEN) -> None:
    """A fresh tab state: the page loaded, the token typed into its prompt, the form built."""
    driver.get(f"http://127.0.0.1:{server.port}/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"http://127.0.0.1:{server.port}/")
    driver.get_log("performance")  # the requests of the first load are checked by the tests' own
    wait(driver, lambda d: shown(d, "token-panel"), 30)
    field = el(driver, "token")
    field.send_keys(token)
    field.send_keys(Keys.ENTER)


def wait_for_form(driver) -> None:
    wait(driver, lambda d: d.find_elements(By.ID, "opt-max_faces"), 30)


def fill(driver, source: Path, target: Path, fields: dict) -> None:
    el(driver, "source").send_keys(str(source))
    el(driver, "target").send_keys(str(target))
    if not el(driver, "options-box").get_attribute("open"):
        el(driver, "options-box").find_element(By.TAG_NAME, "summary").click()
    for name, value in fields.items():
        field = el(driver, f"opt-{name}")
        field.clear()
        field.send_keys(value)


def assert_same_video(got: Path, want: Path, want_again: Path) -> None:
    """``got`` is ``ffkit swap``'s output ``want``: byte for byte where the machine's H.264
    encoder is reproducible (``want_again``, the same swap run again, has ``want``'s bytes);
    where it is not (seen on an AVX-512 Xeon with libx264 165: identical swapped frames, a
    different stream each run, 43 to 70 dB apart), the same frame count and every decoded frame
    within the encoder's own run-to-run spread of ``want``'s (at least 40 dB)."""
    if want.read_bytes() == want_again.read_bytes():
        assert got.read_bytes() == want.read_bytes()
        return
    from ffkit.runtime.media import iter_frames

    a, b = list(iter_frames(got)), list(iter_frames(want))
    assert len(a) == len(b) > 0
    for k, (x, y) in enumerate(zip(a, b)):
        mse = float(np.mean((x.astype(np.float64) - y) ** 2))
        assert mse == 0 or 10 * np.log10(255.0 ** 2 / mse) >= 40.0, f"frame {k}: {10 * np.log10(255.0 ** 2 / mse):.1f} dB"


def submit_by_keyboard(driver) -> None:
    button = el(driver, "submit")
    driver.execute_script("arguments[0].focus()", button)
    assert driver.switch_to.active_element == button
    button.send_keys(Keys.ENTER)


def blob_bytes(driver, url: str) -> bytes:
    """The bytes behind a ``blob:`` URL of the page (read in the page) or a ``data:`` URL."""
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1])
    text = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => r.arrayBuffer()).then(buf => {
          let s = ""; const b = new Uint8Array(buf);
          for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
          done(btoa(s));
        }).catch(e => done("ERROR " + e));""", url)
    assert not text.startswith("ERROR"), text
    return base64.b64decode(text)


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def assert_only_this_server(driver, server) -> list[str]:
    """Every request the page made since the last check went to this server (or stayed in the page)."""
    urls = requested_urls(driver)
    origin = f"http://127.0.0.1:{server.port}/"
    outside = [u for u in urls if not u.startswith((origin, "blob:", "data:"))]
    assert outside == [], outside
    return urls


def screenshot(driver, tmp_path: Path, name: str, keep: bool = False) -> Path:
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 1000
    if keep:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / path.name)
    return path


# ---------------------------------------------------------------- the tests

def test_page_swaps_an_image_byte_equal_to_ffkit_swap(browser, page_server, page_folder, images, tmp_path):  # noqa: F811
    driver = browser
    open_page(driver, page_server)
    wait_for_form(driver)
    # every request option of the one declaration has a labelled field
    for spec in options_for("request"):
        field = el(driver, f"opt-{spec.name}")
        if field.tag_name == "fieldset":
            legend = field.find_element(By.TAG_NAME, "legend").get_attribute("textContent")
            assert legend == spec.name.replace("_", " ")
            assert all(box.get_property("labels") for box in field.find_elements(By.TAG_NAME, "input"))
        else:
            assert field.get_property("labels"), spec.name
    for name in ("source", "target", "reference", "compare", "token"):
        assert el(driver, name).get_property("labels"), name
    fill(driver, images["source"], images["target_png"], FAST_FIELDS)
    video_only = [s.name for s in options_for("request") if s.media == {"video"}]
    assert video_only and not any(shown(driver, f"opt-{name}") for name in video_only)
    submit_by_keyboard(driver)
    wait(driver, lambda d: shown(d, "result") or shown(d, "message"))
    assert not shown(driver, "message"), el(driver, "message").text
    expected = tmp_path / "cli.png"
    cli_swap(page_folder, images["source"], images["target_png"], expected, *FAST_ARGS)
    got = blob_bytes(driver, el(driver, "result-image").get_attribute("src"))
    assert got == expected.read_bytes()
    assert el(driver, "result-download").get_attribute("download") == "swapped.png"
    # the compare slider uncovers the result from the left
    slider = el(driver, "slider")
    slider.send_keys(Keys.END)
    assert "inset(0px 0% 0px 0px)" in el(driver, "slider-over").value_of_css_property("clip-path")
    # the models panel: every model with its sha256
    health = page_server.get_json("/health")[1]
    panel = el(driver, "models-tables").text
    for role, model in health["models"].items():
        assert model["file"] in panel and model["sha256"] in panel, role
    assert "int8" in panel
    screenshot(driver, tmp_path, "page-image", keep=True)
    urls = assert_only_this_server(driver, page_server)
    assert any(u.endswith("/swap") for u in urls)


def test_page_runs_a_video_job_to_100_and_downloads_ffkit_swaps_file(browser, page_server, page_folder, images,
                                                                     downloads, tmp_path):  # noqa: F811
    driver = browser
    video = _tiny_video(tmp_path / "clip.mp4", 12)
    open_page(driver, page_server)
    wait_for_form(driver)
    fill(driver, images["source"], video, FAST_FIELDS)
    assert shown(driver, "opt-detect_every") and el(driver, "opt-detect_every").is_enabled()
    assert el(driver, "submit").text == "Start video job"
    submit_by_keyboard(driver)
    wait(driver, lambda d: d.execute_script("return sessionStorage.getItem('ffkit-job')") or shown(d, "message"))
    assert not shown(driver, "message"), el(driver, "message").text
    # the connection drops while the job runs: the page says so, then picks the progress up again
    driver.set_network_conditions(offline=True, latency=0, download_throughput=-1, upload_throughput=-1)
    try:
        wait(driver, lambda d: "connection lost" in el(d, "job-status").text, 30)
    finally:
        driver.set_network_conditions(offline=False, latency=0, download_throughput=-1, upload_throughput=-1)
    wait(driver, lambda d: shown(d, "job-download") or shown(d, "message"))
    assert not shown(driver, "message"), el(driver, "message").text
    bar = el(driver, "job-progress")
    assert bar.get_property("value") == bar.get_property("max") == 12
    assert bar.get_attribute("data-percent") == "100" and "12 / 12 frames (100%)" in el(driver, "job-status").text
    expected, again = tmp_path / "cli.mp4", tmp_path / "cli-again.mp4"
    cli_swap(page_folder, images["source"], video, expected, *FAST_ARGS)
    cli_swap(page_folder, images["source"], video, again, *FAST_ARGS)
    for old in downloads.iterdir():
        old.unlink()
    el(driver, "job-download").click()
    deadline = time.monotonic() + 30
    while not (downloads / "swapped.mp4").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_same_video(downloads / "swapped.mp4", expected, again)
    screenshot(driver, tmp_path, "page-video", keep=True)
    assert_only_this_server(driver, page_server)


def test_page_cancel_stops_a_video_job_and_leaves_no_output(browser, page_server, images, tmp_path):  # noqa: F811
    driver = browser
    video = _tiny_video(tmp_path / "long.mp4", 80)
    open_page(driver, page_server)
    wait_for_form(driver)
    fill(driver, images["source"], video, FAST_FIELDS)
    before = {p for root in page_server.work_dir.iterdir() for p in root.glob("job-*")}
    submit_by_keyboard(driver)
    wait(driver, lambda d: "running: " in el(d, "job-status").text and " 0 / " not in el(d, "job-status").text)
    job_id = driver.execute_script("return sessionStorage.getItem('ffkit-job')")
    el(driver, "job-cancel").click()
    wait(driver, lambda d: shown(d, "message"))
    assert el(driver, "message").text == "cancelled by the client"
    assert not shown(driver, "job-download")
    status, _, body = page_server.request("GET", f"/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    job = json.loads(body)
    assert status == 200 and job["status"] == "cancelled" and job["progress"]["frames_done"] < 80, job
    (job_folder,) = {p for root in page_server.work_dir.iterdir() for p in root.glob("job-*")} - before
    deadline = time.monotonic() + 10
    while list(job_folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(job_folder.iterdir()) == []  # no partial output, no inputs
    screenshot(driver, tmp_path, "page-cancelled")
    assert_only_this_server(driver, page_server)


def test_page_shows_the_servers_message_for_an_out_of_range_option_at_360_px(browser, page_server, page_folder,
                                                                             images, tmp_path):  # noqa: F811
    driver = browser
    driver.set_window_size(360, 800)
    try:
        open_page(driver, page_server)
        wait_for_form(driver)
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 360
        fill(driver, images["source"], images["small"], {"score_threshold": "7"})
        submit_by_keyboard(driver)
        wait(driver, lambda d: shown(d, "message"))
        cli = assert_one_line_error(ffkit("swap", "--source", images["source"], "--target", images["small"],
                                          "-o", tmp_path / "out.png", "--models", page_folder,
                                          "--score-threshold", "7"))
        assert el(driver, "message").text == cli.removeprefix("error: ")
        assert el(driver, "message").get_attribute("data-status") == "422"
        assert not shown(driver, "result")
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 360
        screenshot(driver, tmp_path, "page-error-360px")
    finally:
        driver.set_window_size(*WIDE)
    assert_only_this_server(driver, page_server)


def test_page_with_a_wrong_token_sees_401_and_no_result(browser, page_server, images, tmp_path):  # noqa: F811
    driver = browser
    open_page(driver, page_server, token="not-" + TOKEN)
    wait(driver, lambda d: shown(d, "message"), 30)
    assert el(driver, "message").text == "wrong token"
    assert el(driver, "message").get_attribute("data-status") == "401"
    assert shown(driver, "token-panel")  # asked again
    assert not driver.find_elements(By.ID, "opt-max_faces")  # no form without the token
    el(driver, "token").send_keys(TOKEN + Keys.ENTER)          # the right one: the form comes
    wait_for_form(driver)
    el(driver, "token-button").click()                        # then a wrong one, and a swap
    el(driver, "token").send_keys("not-" + TOKEN + Keys.ENTER)
    fill(driver, images["source"], images["small"], FAST_FIELDS)
    el(driver, "submit").click()
    wait(driver, lambda d: shown(d, "message"), 30)
    assert el(driver, "message").text == "wrong token"
    assert el(driver, "message").get_attribute("data-status") == "401"
    assert not shown(driver, "result") and not el(driver, "result-image").get_attribute("src")
    log = page_server.log.read_text()
    assert "wrong token" in log and "not-" + TOKEN not in log
    screenshot(driver, tmp_path, "page-wrong-token")
    assert_only_this_server(driver, page_server)


def test_page_compares_two_variant_sets(browser, page_server, page_folder, images, tmp_path):  # noqa: F811
    driver = browser
    open_page(driver, page_server)
    wait_for_form(driver)
    assert "fp32 with int8" in el(driver, "compare-label").text
    fill(driver, images["source"], images["target_png"], FAST_FIELDS)
    el(driver, "compare").click()
    submit_by_keyboard(driver)
    wait(driver, lambda d: shown(d, "compare-result") or shown(d, "message"))
    assert not shown(driver, "message"), el(driver, "message").text
    for side, variant in (("first", "fp32"), ("second", "int8")):
        expected = tmp_path / f"{variant}.png"
        cli_swap(page_folder, images["source"], images["target_png"], expected, *FAST_ARGS, "--variant", variant)
        assert blob_bytes(driver, el(driver, f"compare-{side}").get_attribute("src")) == expected.read_bytes(), side
        assert el(driver, f"compare-{side}-caption").text.startswith(variant)
    rows = dict(line.rsplit(" ", 1) for line in el(driver, "compare-figures").text.splitlines()[1:])
    assert float(rows["PSNR of the two outputs (dB)"]) > 10
    assert -1 <= float(rows["identity cosine between the two faces"]) <= 1
    screenshot(driver, tmp_path, "page-compare")
    assert_only_this_server(driver, page_server)
