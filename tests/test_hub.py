"""Hub ids in recipes and ``erv download``, against a hub-compatible HTTP server on
127.0.0.1 started here (HF_ENDPOINT), serving a tiny model built from a config; then the
recipe naming the hub id trains with the network gone (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from erv_plugins.testing import TINY_GRPO_RECIPE

REPO = "erv-tests/tiny-text"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class TinyHub:
    """Just enough of the hub's HTTP API for ``snapshot_download``: the revision
    (``/api/models/<repo>/revision/<rev>``), its file tree (``/api/models/<repo>/tree/<sha>``)
    and the files (``/<repo>/resolve/<sha>/<file>``)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _file(self) -> bytes | None:
                prefix = f"/{REPO}/resolve/"
                if not self.path.startswith(prefix):
                    return None
                _, _, name = self.path[len(prefix):].partition("/")
                return hub.files.get(name.split("?")[0])

            def _send(self, body: bytes, content_type: str, head: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _serve(self, head: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                if self.path.split("?")[0].startswith(f"/api/models/{REPO}/revision/"):
                    info = {"id": REPO, "sha": COMMIT,
                            "siblings": [{"rfilename": n} for n in sorted(hub.files)]}
                    self._send(json.dumps(info).encode(), "application/json", head)
                    return
                if self.path.split("?")[0].startswith(f"/api/models/{REPO}/tree/"):
                    tree = [{"type": "file", "path": n, "size": len(b),
                             "oid": hashlib.sha1(b).hexdigest()}
                            for n, b in sorted(hub.files.items())]
                    self._send(json.dumps(tree).encode(), "application/json", head)
                    return
                body = self._file()
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self._send(body, "application/octet-stream", head)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._serve(head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(tmp_path: Path):
    from erv_plugins.training.demo import TinyTextOptions, tiny_text_model

    model = tiny_text_model(TinyTextOptions(), out_dir=tmp_path / "built")
    files = {p.relative_to(model).as_posix(): p.read_bytes()
             for p in model.rglob("*") if p.is_file()}
    server = TinyHub(files)
    yield server
    server.close()


def _recipe(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(TINY_GRPO_RECIPE.replace('plugin = "tiny-text"',
                                             f'plugin = "tiny-text"\npath = "{REPO}"'))
    return path


DRIVER = """\
import sys
import erv_plugins.testing.rewards, erv_plugins.training.demo
from erv_plugins.plugins import Plugins
from erv_plugins.recipe import load_recipe
from erv_plugins.stages import run_recipe
plugins = Plugins(extra=[erv_plugins.training.demo, erv_plugins.testing.rewards])
recipe = load_recipe(sys.argv[1], plugins)
recipe.run_dir = sys.argv[2]
run_recipe(recipe, plugins)
"""


def test_erv_download_then_train_offline(tmp_path: Path, hub: TinyHub) -> None:
    recipe = _recipe(tmp_path)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.url,
           "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_HUB_CACHE", None)
    code = ("import sys, erv_plugins.training.demo, erv_plugins.testing.rewards\n"
            "import erv_plugins.plugins as p\n"
            "p._plugins = p.Plugins(extra=[erv_plugins.training.demo, "
            "erv_plugins.testing.rewards])\n"
            "from erv_plugins.cli import main\n"
            "main(['download', sys.argv[1]])\n")
    out = subprocess.run([sys.executable, "-c", code, str(recipe)], env=env, text=True,
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:] + str(hub.requests)
    assert f"erv: $.model.path: downloading {REPO}" in out.stdout
    snapshot = tmp_path / "hf" / "hub" / "models--erv-tests--tiny-text" / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(hub.files)
    hub.requests.clear()
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", DRIVER, str(recipe), str(tmp_path / "run")],
                         env=offline, text=True, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert hub.requests == []  # training never reached the hub
    steps = [json.loads(line) for line in
             (tmp_path / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]


def test_a_hub_id_not_in_the_cache_is_one_line_naming_the_field(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from erv_plugins.errors import ErvError
    from erv_plugins.hub import is_hub_id, local_model, split_ref

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert split_ref("org/m@v1.0") == ("org/m", "v1.0")
    assert (is_hub_id("org/m"), is_hub_id("./org/m"), is_hub_id("/abs/m"),
            is_hub_id("org/m/sub")) == (True, False, False, False)
    with pytest.raises(ErvError, match=r"^r\.toml: \$\.model\.path: org/m@v1: no such "
                                       r"directory, and not in the local Hugging Face cache"):
        local_model("org/m@v1", where="r.toml: $.model.path")
