"""The latent-space explorer: a small local HTTP server that drives a trained model for the
page in ``static/`` (plain HTML and JavaScript, nothing fetched from elsewhere).

JSON API (every answer is JSON; bad requests get a 4xx with {"error": "..."}; POST bodies are
``Content-Type: application/json``, so that no other web page can post to it with a plain form):
  GET  /api/info                          the model: latent size, image shape, units by activity, test points
  POST /api/decode     {"z": [...]}       the decoder's mean image at z
  POST /api/encode     {"index": i} | {"image": "data:image/png;base64,..."} | {"x": [...]}
                                          posterior mean and σ per unit, and the reconstruction
  POST /api/sample     {"temperature": t, "seed": s}   a prior sample, its z and image
Images travel as PNG data URIs ("image") and as flat lists of floats in [0, 1] ("x").
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import math
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .errors import VaekitError
from .limits import checked
from .data.parts import materialize
from .data.readers import ImageTooLarge, read_image_tensor

LOOPBACK = ("127.0.0.1", "localhost")
MAX_BODY = 2 * 1024 * 1024  # bytes: a request larger than any image upload we accept
DRAIN_LIMIT = 8 * MAX_BODY  # an oversized body up to this is read and dropped before the 413; a larger one is cut off
MAX_PIXELS = 4096 * 4096  # an upload decoding to more pixels than this is refused before it is decoded
MAX_DECODING = 2  # uploads decoded at once (one can take ~100 MB); more get 429 and retry
MAX_LATENT = 1e4  # |z| beyond this decodes to nothing meaningful, and to overflow in float32
SOCKET_TIMEOUT = 10.0  # seconds a connection may stay silent mid-request before it is closed
SCATTER_POINTS = 2000
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".png": "image/png", ".svg": "image/svg+xml"}


class BadRequest(Exception):
    """A client error: the status and a message for the client."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class Explorer:
    """The model behind the API: every computation the server answers with, in one place, usable without HTTP."""

    def __init__(self, model, dataset=None, seed: int = 0):
        if model.prior is None or model.conditional:
            raise VaekitError(f"the explorer drives an unconditional VAE; this run holds a {type(model).__name__} "
                              "(use vaekit sample --label and vaekit style for a conditional one)")
        if len(model.input_shape) != 3 or (dataset is not None and dataset.kind != "image"):
            raise VaekitError(f"the explorer draws images; this run's model takes rows of shape {list(model.input_shape)} "
                              "(use vaekit sample and vaekit embed for table data)")
        self.model, self.lock, self.decoding = model.eval(), threading.Lock(), threading.BoundedSemaphore(MAX_DECODING)
        self.shape = model.input_shape
        self.k = model.latent_dim
        self.x, self.y = (None, None)
        if dataset is not None and dataset.kind == "image":
            self.x, self.y = materialize(dataset.test, SCATTER_POINTS, model.device, seed)
            self.shape = tuple(self.x.shape[1:])
        self.classes = getattr(dataset, "classes", None)
        self.units, self.points = list(range(self.k)), None
        if self.x is not None:
            with torch.no_grad():
                mu = self.model.encode(self.x).mean  # (N, k)
            self.units = mu.var(0).argsort(descending=True).tolist()
            self.points = mu.cpu().tolist() if self.k == 2 else None

    def info(self) -> dict[str, Any]:
        """What the page needs first: latent size, image shape, units by activity, the 2-D scatter."""
        return {"latent_dim": self.k, "shape": list(self.shape), "units_by_activity": self.units,
                "test_images": 0 if self.x is None else len(self.x),
                "points": self.points, "labels": None if self.y is None or self.points is None else self.y.tolist(),
                "classes": self.classes}

    def _out(self, x: torch.Tensor) -> dict[str, Any]:
        if not bool(torch.isfinite(x).all()):
            raise BadRequest("the model decodes this to values that are not finite", HTTPStatus.UNPROCESSABLE_ENTITY)
        return {"image": png_data_uri(x), "x": x.flatten().tolist()}

    @torch.no_grad()
    def decode(self, z: list) -> dict[str, Any]:
        """The decoder's mean at a latent vector z, as a PNG and as numbers."""
        t = self._vector(z, "z", self.k, MAX_LATENT)
        with self.lock:
            return self._out(self.model.decode(t[None]).mean[0])

    @torch.no_grad()
    def encode(self, body: dict) -> dict[str, Any]:
        """A test image, an uploaded one or raw numbers encoded: posterior mean and σ, and the reconstruction."""
        if "index" in body:
            i = body["index"]
            n = 0 if self.x is None else len(self.x)
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n:
                raise BadRequest(f"index {i!r}: expected a test image number from 0 to {n - 1}")
            x = self.x[i]
        elif "image" in body:
            x = self._image(body["image"])
        elif "x" in body:
            x = self._vector(body["x"], "x", math.prod(self.shape), 1.0, 0.0).view(self.shape)
        else:
            raise BadRequest('expected one of "index", "image" or "x"')
        with self.lock:
            q_z = self.model.encode(x[None])
            x_hat = self.model.decode(q_z.mean).mean[0]
        return {"mean": q_z.mean[0].tolist(), "std": q_z.stddev[0].tolist(), "input": png_data_uri(x), **self._out(x_hat)}

    @torch.no_grad()
    def sample(self, body: dict) -> dict[str, Any]:
        """A prior draw at a temperature and seed, decoded."""
        t = body.get("temperature", 1.0)
        seed = body.get("seed")
        if not _finite_number(t) or not 0 <= t <= 10:
            raise BadRequest(f"temperature {_short(t)}: expected a number from 0 to 10")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise BadRequest(f"seed {_short(seed)}: expected an integer from 0 to 2**63 - 1")
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(self.k, generator=g) * t
        return {"z": z.tolist(), **self.decode(z.tolist())}

    def _vector(self, v, name: str, n: int, high: float, low: float | None = None) -> torch.Tensor:
        low = -high if low is None else low
        if not isinstance(v, list) or not all(_finite_number(a) and low <= a <= high for a in v):
            raise BadRequest(f'"{name}": expected a list of {n} numbers from {low:g} to {high:g}')
        if len(v) != n:
            raise BadRequest(f'"{name}": expected {n} numbers, got {len(v)}')
        return torch.tensor(v, dtype=torch.float32, device=self.model.device)

    def _image(self, uri) -> torch.Tensor:
        if not isinstance(uri, str) or not uri.startswith("data:image/") or ";base64," not in uri:
            raise BadRequest('"image": expected a data URI such as data:image/png;base64,...', HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        if not self.decoding.acquire(blocking=False):
            raise BadRequest(f"{MAX_DECODING} uploads are being read already; try again in a moment", HTTPStatus.TOO_MANY_REQUESTS)
        try:
            raw = base64.b64decode(uri.split(",", 1)[1], validate=True)
            return read_image_tensor(io.BytesIO(raw), self.shape, MAX_PIXELS).to(self.model.device)
        except ImageTooLarge as e:
            raise BadRequest(str(e).replace("image: ", ""), HTTPStatus.REQUEST_ENTITY_TOO_LARGE) from None
        except (binascii.Error, VaekitError):
            raise BadRequest('"image": not a readable image', HTTPStatus.UNSUPPORTED_MEDIA_TYPE) from None
        finally:
            self.decoding.release()


def _finite_number(v) -> bool:
    """A JSON number that is a finite float (an integer of 400 digits is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v) if isinstance(v, float) else abs(v) < 2**63


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def png_data_uri(x: torch.Tensor, upscale: int | None = None) -> str:
    """(C, H, W) in [0, 1] as a PNG data URI, enlarged by whole pixels to about 112 pixels high."""
    from PIL import Image

    from .plots import image_grid

    a = image_grid(x[None], nrow=1, pad=0, upscale=upscale or max(1, 112 // x.shape[-2]))
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def static_dir() -> Path:
    """The folder of the explorer page's own files, inside the package."""
    return Path(str(resources.files("vaekit") / "static"))


def make_handler(explorer: Explorer, static: Path):
    """The HTTP request handler class that answers from ``explorer``."""
    root = static.resolve()
    posts = {"/api/decode": lambda b: explorer.decode(b.get("z")), "/api/encode": explorer.encode, "/api/sample": explorer.sample}

    class Handler(BaseHTTPRequestHandler):
        server_version = "vaekit-explorer"
        timeout = SOCKET_TIMEOUT  # a client that stops sending mid-request no longer holds its thread forever

        def log_message(self, *args):  # quiet: the command prints the address, not every request
            pass

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            try:
                body = json.dumps(obj, allow_nan=False)  # a bare NaN is not JSON, and browsers refuse it
            except ValueError:
                status, body = HTTPStatus.UNPROCESSABLE_ENTITY, json.dumps({"error": "the answer holds numbers that are not finite"})
            self._send(status, body.encode(), "application/json")

        def _guarded(self, work) -> None:
            try:
                self._check_host()
                work()
            except BadRequest as e:
                self._json(e.status, {"error": str(e)})
            except TimeoutError:
                self.close_connection = True
                self._json(HTTPStatus.REQUEST_TIMEOUT, {"error": f"no data for {SOCKET_TIMEOUT:g} s; the request was dropped"})
            except RecursionError:
                self._json(HTTPStatus.BAD_REQUEST, {"error": "malformed JSON: nested too deeply"})
            except Exception as e:  # noqa: BLE001 - the server must stay up and answer whatever happens
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(e).__name__}: {e}"})

        def _check_host(self) -> None:
            """On loopback, only requests addressed to loopback: a page elsewhere whose name was rebound to
            127.0.0.1 (DNS rebinding) sends its own name as the Host and is refused."""
            if getattr(self.server, "allow_remote", False):
                return
            host = (self.headers.get("Host") or "").strip().lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in ("127.0.0.1", "localhost", "[::1]"):
                raise BadRequest(f"Host {_short(host)}: the explorer answers requests to 127.0.0.1 or localhost only",
                                 HTTPStatus.MISDIRECTED_REQUEST)

        def do_GET(self):
            self._guarded(self._get)

        def do_POST(self):
            self._guarded(self._post)

        def _get(self):
            path = self.path.split("?", 1)[0]
            if path == "/api/info":
                return self._json(HTTPStatus.OK, explorer.info())
            if path.startswith("/api/"):
                raise BadRequest(f"{path}: no such GET endpoint", HTTPStatus.NOT_FOUND)
            name = "explorer.html" if path == "/" else path.lstrip("/")
            try:
                target = (root / name).resolve()
            except (ValueError, OSError):
                raise BadRequest(f"{_short(path)}: not a file name", HTTPStatus.NOT_FOUND) from None
            if not target.is_relative_to(root) or ".." in Path(name).parts:
                raise BadRequest(f"{path}: outside the explorer's files", HTTPStatus.FORBIDDEN)
            if not target.is_file() or target.suffix not in STATIC_TYPES:
                raise BadRequest(f"{path}: not found", HTTPStatus.NOT_FOUND)
            self._send(HTTPStatus.OK, target.read_bytes(), STATIC_TYPES[target.suffix])

        def _post(self):
            path = self.path.split("?", 1)[0]
            if path not in posts:
                raise BadRequest(f"{path}: no such POST endpoint", HTTPStatus.NOT_FOUND)
            kind = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                self.close_connection = True
                raise BadRequest(f"Content-Type {_short(kind)}: expected application/json", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise BadRequest("a Content-Length header is required", HTTPStatus.LENGTH_REQUIRED) from None
            if length < 0:
                self.close_connection = True
                raise BadRequest(f"Content-Length {length}: expected the body's size in bytes")
            if length > MAX_BODY:
                self.close_connection = True
                if length <= DRAIN_LIMIT:  # read the body away, so the client is not cut off mid-send before our answer
                    for start in range(0, length, 1 << 16):
                        self.rfile.read(min(1 << 16, length - start))
                raise BadRequest(f"request of {length} bytes is over the {MAX_BODY}-byte limit", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BadRequest(f"malformed JSON: {e}") from None
            if not isinstance(body, dict):
                raise BadRequest("expected a JSON object")
            self._json(HTTPStatus.OK, posts[path](body))

    return Handler


@checked
def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``explorer``; anything but loopback only with ``allow_remote``."""
    if host not in LOOPBACK and not allow_remote:
        raise VaekitError(f"host {host!r}: the explorer serves loopback only (127.0.0.1) unless --host is given explicitly")
    try:
        server = ThreadingHTTPServer((host, port), make_handler(explorer, static_dir()))
    except OSError as e:
        raise VaekitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    server.daemon_threads = True
    server.allow_remote = host not in LOOPBACK  # a chosen address: its clients may call it by any name
    return server
