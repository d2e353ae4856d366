"""``fairseq-dlm-demo`` in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed by ``scripts/setup_env.sh``) driven by Selenium against the real
server started with ``python -m fairseq_dlm.demo`` on the trained reverse model."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

S = 6  # steps
DELAY = 80  # slow motion, ms per step: streamed steps arrive spread over time, buffered ones at once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(reverse_length_model, reverse_data):
    ckpt, _ = reverse_length_model
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "fairseq_dlm.demo", "--path", ckpt, "--data", reverse_data,
                             "--port", str(port), "--max-queue", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "api/config", timeout=2) as r:
                config = json.load(r)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the demo server did not start:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.3)
    yield url, config
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: run bash scripts/setup_env.sh "
                    "(as root, or with sudo) or apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def model(reverse_length_model, reverse_data):
    from fairseq_dlm import DiffusionLM

    return DiffusionLM.from_pretrained(str(reverse_length_model[0]), data=str(reverse_data))


def _open(driver, url):
    driver.get(url)
    _wait(driver, "return document.body.dataset.ready === '1'")


def _wait(driver, script, seconds=30):
    deadline = time.time() + seconds
    while not driver.execute_script(script):
        assert time.time() < deadline, f"timed out waiting for: {script}"
        time.sleep(0.02)


def _fill(driver, **fields):
    for name, value in fields.items():
        driver.execute_script("document.getElementById(arguments[0]).value = arguments[1]", name, str(value))


STEPS = """return [...document.querySelectorAll('#steps li')].map(li => ({step: +li.dataset.step, ms: +li.dataset.ms,
  cands: [...li.querySelectorAll('.cand')].map(c => ({text: c.dataset.text, masks: +c.dataset.masks,
                                                     length: +c.dataset.length}))}))"""
CHOSEN = "return +document.querySelector('#canvas .cand.chosen').dataset.index"
DONE = "return document.getElementById('final').dataset.done === '1'"


def test_steps_stream_in_order_and_end_in_the_api_answer(server, browser, model):
    url, config = server
    prompt = "reverse : a b c d e f g h ="
    _open(browser, url)
    _fill(browser, prompt=prompt, steps_n=S, length_beam=3, step_delay_ms=DELAY)
    browser.find_element("id", "run").click()
    partial = False  # a moment with steps shown and no answer yet
    deadline = time.time() + 30
    while not browser.execute_script(DONE):
        partial |= browser.execute_script("return document.querySelectorAll('#steps li').length") >= 2
        assert time.time() < deadline
    assert browser.find_element("id", "error").text == ""
    steps, chosen = browser.execute_script(STEPS), browser.execute_script(CHOSEN)
    final = browser.find_element("id", "final").text
    expected = model.generate(prompt, steps=S, length_beam=3, return_dict=True)
    assert final == expected["text"] and chosen == expected["chosen"]
    assert [s["step"] for s in steps] == list(range(S + 1))
    assert [c["length"] for c in steps[0]["cands"]] == [c["length"] for c in expected["candidates"]]
    canvases = [s["cands"][chosen] for s in steps]
    masks = [c["masks"] for c in canvases]
    assert masks[0] == canvases[0]["length"] and masks[-1] == 0
    assert all(b <= a for a, b in zip(masks, masks[1:])), masks  # the mask count never rises
    assert len({c["text"] for c in canvases}) >= S  # the canvas changes as it is denoised
    assert canvases[-1]["text"] == final
    assert partial and steps[-1]["ms"] - steps[1]["ms"] >= 0.8 * DELAY * (S - 1)  # streamed, not buffered


def test_bad_input_is_answered_in_the_page(server, browser):
    url, _ = server
    _open(browser, url)
    for fields, words in [({"prompt": "reverse : a b =", "steps_n": 0}, "steps must be from 1 to"),
                          ({"prompt": "   "}, "prompt is empty"),
                          ({"prompt": "reverse : a b =", "mbr": 2, "temperature": 0}, "needs sampling")]:
        _open(browser, url)
        _fill(browser, **fields)
        browser.find_element("id", "run").click()
        _wait(browser, "return document.getElementById('error').textContent.length > 0")
        assert words in browser.find_element("id", "error").text
        assert browser.execute_script("return document.querySelectorAll('#steps li').length") == 0


def test_two_pages_decode_at_once_each_its_own(server, browser, model):
    url, _ = server
    prompts = ["reverse : a b c d e f g h =", "reverse : q r s ="]
    tabs = []
    for prompt in prompts:  # both start before either ends (slow motion), the second waits in the queue
        if tabs:
            browser.switch_to.new_window("tab")
        _open(browser, url)
        _fill(browser, prompt=prompt, steps_n=S, length_beam=2, step_delay_ms=DELAY)
        browser.find_element("id", "run").click()
        tabs.append(browser.current_window_handle)
    for prompt, tab in zip(prompts, tabs):
        browser.switch_to.window(tab)
        _wait(browser, DONE)
        expected = model.generate(prompt, steps=S, length_beam=2)
        assert browser.find_element("id", "final").text == expected
        steps, chosen = browser.execute_script(STEPS), browser.execute_script(CHOSEN)
        assert steps[-1]["cands"][chosen]["text"] == expected and len(steps) == S + 1
    assert model.generate(prompts[0], steps=S, length_beam=2) != model.generate(prompts[1], steps=S, length_beam=2)


def _post(url, body: bytes):
    """``(status, parsed JSON or first event)`` of ``POST /api/decode``."""
    req = urllib.request.Request(url + "api/decode", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.readline()[6:])
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_server_refuses_what_it_cannot_take_and_frees_places_of_pages_that_left(server):
    import http.client

    url, config = server
    assert config["limits"]["max_queue"] == 2 and config["limits"]["max_concurrent"] == 1
    status, answer = _post(url, b"{not json")
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = _post(url, b" " * ((1 << 20) + 16))
    assert status == 413 and "bytes" in answer["error"]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    slow = json.dumps({"prompt": "reverse : a b c =", "steps": S, "step_delay_ms": 1000}).encode()
    held = []
    for _ in range(3):  # one decodes (slowly), two wait: the server is full
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/decode", slow, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        held.append((conn, json.loads(resp.readline()[6:])))
    assert [e["type"] for _, e in held] == ["step", "queued", "queued"]
    status, answer = _post(url, slow)
    assert status == 503 and "busy" in answer["error"]
    for conn, _ in held:  # the pages go away: their decoding stops at its next step, their places free up
        conn.close()
    start = time.time()
    while True:  # admitted again (the queue places free first; the decoding one at its next step)...
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/decode", json.dumps({"prompt": "reverse : a b c =", "steps": S}).encode(),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status == 200:
            break
        conn.close()
        assert time.time() - start < 10, "the places of closed requests were not freed"
        time.sleep(0.2)
    first = json.loads(resp.readline()[6:])
    while first["type"] == "queued":  # ...and decoding soon: the closed pages' job stopped
        resp.readline()
        first = json.loads(resp.readline()[6:])
    conn.close()
    assert first["type"] == "step" and first["step"] == 0 and time.time() - start < 10
