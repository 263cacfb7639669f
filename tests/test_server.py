import base64
import http.client
import io
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.errors import VaekitError
from vaekit.data.parts import materialize
from vaekit.server import MAX_BODY, Explorer, make_server
from vaekit.runs import prepare


@pytest.fixture(scope="module")
def served(digits_run):
    _, dataset = prepare(digits_run.config)
    model = digits_run.model.eval()
    server = make_server(Explorer(model, dataset), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    x, _ = materialize(dataset.test, 2000, "cpu", 0)
    yield server.server_address[1], model, x
    server.shutdown()
    server.server_close()


def request(port, method, path, body=None, raw: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    kind = r.getheader("Content-Type", "")
    return r.status, (strict_json(payload) if kind.startswith("application/json") else payload)


def strict_json(payload: bytes):
    """JSON as the standard has it: a bare NaN or Infinity, which Python would accept, is a failure."""
    def refuse(constant):
        raise AssertionError(f"the answer holds a bare {constant}, which is not JSON")

    return json.loads(payload, parse_constant=refuse)


def png_uri(a: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_info(served):
    port, model, x = served
    status, info = request(port, "GET", "/api/info")
    assert status == 200 and info["latent_dim"] == 4 and info["shape"] == [1, 8, 8] and info["test_images"] == len(x)
    v = model.encode(x).mean.var(0)
    assert sorted(info["units_by_activity"]) == [0, 1, 2, 3] and v[info["units_by_activity"][0]] == v.max()


def test_decode_agrees_with_the_library(served):
    port, model, _ = served
    z = [0.3, -1.2, 2.0, 0.05]
    status, out = request(port, "POST", "/api/decode", {"z": z})
    assert status == 200 and out["image"].startswith("data:image/png;base64,")
    expected = model.decode(torch.tensor([z])).mean[0]
    assert torch.allclose(torch.tensor(out["x"]).view(1, 8, 8), expected, atol=1e-6)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["image"].split(",", 1)[1]))))
    assert shown.shape == (112, 112) and abs(int(shown[0, 0]) - round(expected[0, 0, 0].item() * 255)) <= 1


def test_encode_agrees_with_the_library(served):
    port, model, x = served
    q_z = model.encode(x[5:6])
    for body in ({"index": 5}, {"x": x[5].flatten().tolist()}, {"image": png_uri((x[5, 0].numpy() * 255).astype(np.uint8))}):
        status, out = request(port, "POST", "/api/encode", body)
        assert status == 200, out
        assert torch.allclose(torch.tensor(out["mean"]), q_z.mean[0], atol=1e-5)
        assert torch.allclose(torch.tensor(out["std"]), q_z.stddev[0], atol=1e-5)
        assert torch.allclose(torch.tensor(out["x"]).view(1, 8, 8), model.reconstruct(x[5:6])[0], atol=1e-5)


def test_sample_is_seeded_and_decodes_its_z(served):
    port, model, _ = served
    status, out = request(port, "POST", "/api/sample", {"temperature": 0.5, "seed": 3})
    assert status == 200
    assert torch.allclose(torch.tensor(out["z"]), torch.randn(4, generator=torch.Generator().manual_seed(3)) * 0.5)
    assert torch.allclose(torch.tensor(out["x"]).view(1, 8, 8), model.decode(torch.tensor([out["z"]])).mean[0], atol=1e-6)


@pytest.mark.parametrize("path, body, raw, status, message", [
    ("/api/decode", None, b"{not json", 400, "malformed JSON"),
    ("/api/decode", None, b"[1, 2]", 400, "expected a JSON object"),
    ("/api/decode", {"z": [1, 2]}, None, 400, '"z": expected 4 numbers, got 2'),
    ("/api/decode", None, b'{"z": [1, 2, NaN, 0]}', 400, '"z": expected a list of 4 numbers from -10000 to 10000'),
    ("/api/decode", None, b'{"z": [1, 2, Infinity, 0]}', 400, "numbers from"),
    ("/api/decode", {"z": [1, "a", 0, 0]}, None, 400, "numbers from"),
    ("/api/decode", None, b'{"z": [1, 2, ' + b"1" * 400 + b', 0]}', 400, "numbers from"),  # an integer of 400 digits
    ("/api/decode", {"z": [1e308, 0, 0, 0]}, None, 400, "numbers from"),  # would decode to non-finite values
    ("/api/decode", None, b'{"z": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "malformed JSON"),
    ("/api/encode", {"x": [2.0] * 64}, None, 400, '"x": expected a list of 64 numbers from 0 to 1'),
    ("/api/sample", {"seed": 10 ** 23}, None, 400, "seed 100000000000000000000000: expected an integer from 0 to 2**63 - 1"),
    ("/api/decode", {}, None, 400, '"z": expected a list'),
    ("/api/encode", {"index": 10 ** 6}, None, 400, "expected a test image number from 0 to"),
    ("/api/encode", {"image": "data:image/png;base64," + base64.b64encode(b"plain text, not a PNG").decode()}, None, 415, "not a readable image"),
    ("/api/encode", {"image": "http://example.com/a.png"}, None, 415, "expected a data URI"),
    ("/api/encode", {"x": [0.5] * 63}, None, 400, '"x": expected 64 numbers'),
    ("/api/encode", {"nothing": 1}, None, 400, 'expected one of "index", "image" or "x"'),
    ("/api/sample", {"temperature": -1}, None, 400, "temperature -1: expected a number from 0 to 10"),
    ("/api/sample", {"seed": "x"}, None, 400, "seed 'x'"),
    ("/api/nothing", {}, None, 404, "no such POST endpoint"),
])
def test_bad_requests_get_4xx_with_a_message(served, path, body, raw, status, message):
    port = served[0]
    got, out = request(port, "POST", path, body, raw)
    assert got == status and message in out["error"]
    assert request(port, "GET", "/api/info")[0] == 200  # still serving


def test_oversized_uploads_are_refused(served):
    port = served[0]
    big = json.dumps({"image": "data:image/png;base64," + "A" * (MAX_BODY + 10)}).encode()
    status, out = request(port, "POST", "/api/encode", raw=big)
    assert status == 413 and "over the" in out["error"]
    huge = png_uri(np.zeros((5000, 5000), np.uint8))  # small as PNG, 25 million pixels decoded
    status, out = request(port, "POST", "/api/encode", {"image": huge})
    assert status == 413 and "too large" in out["error"]
    assert request(port, "GET", "/api/info")[0] == 200


def test_static_files_and_no_traversal(served):
    port = served[0]
    status, page = request(port, "GET", "/")
    assert status == 200 and b"<script src=\"/explorer.js\">" in page
    assert request(port, "GET", "/explorer.js")[0] == 200
    for path in ("/../../../etc/passwd", "/..%2f..%2fetc/passwd", "/static/../../cli.py", "/../server.py"):
        status, out = request(port, "GET", path)
        assert status in (403, 404) and "error" in out
    assert request(port, "GET", "/api/nothing")[0] == 404


def test_only_loopback_unless_asked(digits_run):
    model = digits_run.model
    with pytest.raises(VaekitError, match="serves loopback only"):
        make_server(Explorer(model), "0.0.0.0", 0)
    server = make_server(Explorer(model), "127.0.0.1", 0)
    assert server.server_address[0] == "127.0.0.1"
    server.server_close()


def test_two_hundred_decodes_from_eight_clients(served, capsys):
    port = served[0]
    g = torch.Generator().manual_seed(0)
    zs = (torch.randn(200, 4, generator=g) * 2).tolist()

    def one(z):
        t0 = time.perf_counter()
        status, out = request(port, "POST", "/api/decode", {"z": z})
        return status, len(out["x"]), time.perf_counter() - t0

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, zs))
    assert [r[:2] for r in results] == [(200, 64)] * 200
    latencies = sorted(r[2] for r in results)
    p95 = latencies[int(0.95 * len(latencies)) - 1]
    with capsys.disabled():  # shown in every test run, not only on failure
        print(f"\n200 decodes from 8 clients: median {statistics.median(latencies) * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms")
    assert p95 < 1.0


def test_the_explore_command_serves_on_loopback(digits_run):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "explore", str(digits_run.dir), "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "at http://127.0.0.1:" in line, line + proc.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        status, info = request(port, "GET", "/api/info")
        assert status == 200 and info["latent_dim"] == 4
    finally:
        proc.terminate()
        proc.wait(10)


def raw_request(port: int, data: bytes, timeout: float = 30) -> tuple[int, dict]:
    """Send bytes as they are (headers a client library would fix); the status and JSON answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(1 << 16):
            answer += chunk
            head, sep, body = answer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), None)
            if sep and length is not None and len(body) >= length:
                break
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), strict_json(body)


@pytest.mark.parametrize("data, status, message", [
    (b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n", 400, "Content-Length -5"),
    (b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", 415, "expected application/json"),
    (b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}", 415, "expected application/json"),
    (b"GET /api/info HTTP/1.1\r\nHost: attacker.example:8765\r\n\r\n", 421, "127.0.0.1 or localhost only"),  # DNS rebinding
    (b"GET /api/info HTTP/1.1\r\n\r\n", 421, "127.0.0.1 or localhost only"),
    (b"GET /a\x00b HTTP/1.1\r\nHost: localhost\r\n\r\n", 404, "not"),
])
def test_malformed_http_gets_a_4xx(served, data, status, message):
    port = served[0]
    got, out = raw_request(port, data)
    assert got == status and message in out["error"], out
    assert request(port, "GET", "/api/info")[0] == 200


def test_a_silent_client_is_dropped_after_the_socket_timeout(digits_run, monkeypatch):
    import vaekit.server as server_module

    monkeypatch.setattr(server_module, "SOCKET_TIMEOUT", 1.0)
    server = make_server(Explorer(digits_run.model), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.perf_counter()  # a Content-Length larger than the body: the server waits for bytes that never come
        status, out = raw_request(server.server_address[1], b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"z\"", timeout=20)
        assert status == 408 and "dropped" in out["error"] and time.perf_counter() - t0 < 10
    finally:
        server.shutdown()
        server.server_close()


def test_uploads_decoded_at_once_are_bounded(served, digits_run):
    from vaekit.server import MAX_DECODING, BadRequest

    explorer = Explorer(digits_run.model)
    for _ in range(MAX_DECODING):
        explorer.decoding.acquire()  # as if that many uploads were being decoded now
    with pytest.raises(BadRequest, match="try again") as caught:
        explorer.encode({"image": png_uri(np.zeros((8, 8), np.uint8))})
    assert caught.value.status == 429
    explorer.decoding.release()
    assert len(explorer.encode({"image": png_uri(np.zeros((8, 8), np.uint8))})["mean"]) == 4


def test_the_explorer_refuses_a_model_of_table_rows():
    from vaekit.config import ModelConfig
    from vaekit.models import build

    model = build(ModelConfig(input_shape=(5,), likelihood="gaussian", latent_dim=2))
    with pytest.raises(VaekitError, match="the explorer draws images"):
        Explorer(model)


def test_fuzzed_requests_never_get_a_5xx(served):
    """Random and malformed requests: every answer is a status below 500 with a JSON body, and the server
    still answers afterwards."""
    import random

    port = served[0]
    rng = random.Random(0)
    values = [None, True, -1, 0, 3, 10 ** 30, -(10 ** 400), 1e308, -1e-308, 0.5, "", "x" * 1000, [], {}, [1, 2],
              [0.5] * 64, [1e5] * 4, ["a"] * 4, [10 ** 400] * 4, [1e308] * 4, 10 ** 23, [2.0] * 64, {"z": 1}, "data:image/png;base64,AAAA", "data:image/png;base64,!!"]
    keys = ["z", "x", "index", "image", "temperature", "seed", "other"]
    paths = ["/api/decode"] * 3 + ["/api/encode"] * 2 + ["/api/sample"] * 2 + ["/api/info", "/api/none", "/", "/explorer.js", "/%2e%2e/x"]
    for i in range(400):
        path = rng.choice(paths)
        if rng.random() < 0.3:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # not JSON at all
        else:
            body = json.dumps({rng.choice(keys): rng.choice(values) for _ in range(rng.randrange(3))}).encode()
        method = "GET" if rng.random() < 0.2 else "POST"
        status, out = request(port, method, path, raw=body if method == "POST" else None)
        assert status < 500, (method, path, body, out)
        if path.startswith("/api/") or status >= 400:
            assert isinstance(out, dict), (method, path, body, out)
    assert request(port, "GET", "/api/info")[0] == 200
