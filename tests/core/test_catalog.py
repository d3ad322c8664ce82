"""Public models by name: a loopback HTTP server serves a random NAFNet file for an entry of a $DEBLUR_MODELS file;
fetched once, checked, run by name, offline from the cache; corrupted files refused with nothing cached."""

import hashlib
import http.server
import json
import os
import threading

import numpy as np
import pytest

from deblur import cli
from deblur.core import catalog
from tests.conftest import textured, write_image
from tests.core.test_foreign import nafnet, random_weights, save


class Served:
    """Files served on loopback, each request counted by path."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                served.requests.append(self.path)
                data = served.files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def models(tmp_path, monkeypatch):
    """A $DEBLUR_MODELS file with one entry served on loopback, and an empty cache."""
    weights = open(save(random_weights(nafnet), tmp_path / "nafnet", "params"), "rb").read()
    served = Served({"/nafnet.pth": weights})
    entry = {"name": "tiny-nafnet", "urls": [f"{served.url}/missing.pth", f"{served.url}/nafnet.pth"],
             "sha256": hashlib.sha256(weights).hexdigest(), "licence": "MIT", "architecture": "NAFNet",
             "note": "free text is kept out of the entry"}
    (tmp_path / "models.json").write_text(json.dumps([entry]))
    monkeypatch.setenv(catalog.ENV_MODELS, str(tmp_path / "models.json"))
    monkeypatch.setenv(catalog.ENV_CACHE, str(tmp_path / "cache"))
    yield served, weights
    served.server.shutdown()


def test_a_model_is_fetched_once_checked_and_run_by_name_then_offline_from_the_cache(tmp_path, models, monkeypatch):
    served, weights = models
    write_image(tmp_path / "in" / "a.png", textured(24, 24))
    monkeypatch.chdir(tmp_path)  # a name, not a path
    assert cli.main(["eval", "--model", "tiny-nafnet", "--data", "in", "--degradation", "gaussian:sigma=1",
                     "--output", "eval"]) == 0
    assert served.requests == ["/missing.pth", "/nafnet.pth"]  # the first URL failed, the mirror served
    cached = catalog.cached_path(catalog.entry("tiny-nafnet"))
    assert open(cached, "rb").read() == weights and os.listdir(os.path.dirname(cached)) == [os.path.basename(cached)]
    served.server.shutdown()  # offline
    from deblur import load

    out = load("tiny-nafnet", "cpu")(textured(24, 24))
    assert out.shape == (24, 24, 3) and not np.array_equal(out, textured(24, 24))
    assert len(served.requests) == 2


def test_a_corrupted_file_is_refused_and_nothing_is_cached(models, capsys):
    served, weights = models
    served.files["/nafnet.pth"] = weights[:-10] + b"0123456789"
    with pytest.raises(catalog.HashMismatch, match="refused, nothing cached"):
        catalog.fetch("tiny-nafnet")
    folder = os.path.dirname(catalog.cached_path(catalog.entry("tiny-nafnet")))
    assert os.listdir(folder) == []  # neither the file nor a partial download
    with open(catalog.cached_path(catalog.entry("tiny-nafnet")), "wb") as f:
        f.write(b"tampered in the cache")
    assert cli.main(["inspect", "tiny-nafnet"]) == 2  # refused before use, and removed
    assert "not the entry's" in capsys.readouterr().err and os.listdir(folder) == []


def test_models_add_takes_a_file_fetched_by_hand_and_refuses_a_wrong_one(tmp_path, models, capsys):
    served, weights = models
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(b"not the model")
    assert cli.main(["models", "add", "tiny-nafnet", str(wrong)]) == 2
    assert "refused, nothing cached" in capsys.readouterr().err and wrong.exists()  # the user's file stays
    right = tmp_path / "by-hand.pth"
    right.write_bytes(weights)
    assert cli.main(["models", "add", "tiny-nafnet", str(right)]) == 0
    assert catalog.fetch("tiny-nafnet") == catalog.cached_path(catalog.entry("tiny-nafnet"))
    assert served.requests == []  # never downloaded


def test_unreachable_urls_give_one_line_naming_them_and_the_way_out(tmp_path, models, capsys):
    served, _ = models
    served.server.shutdown()
    served.server.server_close()
    assert cli.main(["inspect", "tiny-nafnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.pth" in err and "deblur models add tiny-nafnet FILE" in err


def test_the_listing_names_every_entry_with_its_hash_and_sources(models, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for e in catalog.BUILTIN:
        assert e.name in out and e.sha256 in out and all(s in out for s in e.sources)
    assert "tiny-nafnet" in out
    assert {e.name for e in catalog.BUILTIN} == {"nafnet-gopro-width32", "nafnet-gopro-width64"}


def test_bad_entries_are_refused(tmp_path, monkeypatch):
    (tmp_path / "m.json").write_text(json.dumps([{"name": "x", "urls": ["http://x/y.pth"], "sha256": "abc",
                                                  "licence": "MIT"}]))
    monkeypatch.setenv(catalog.ENV_MODELS, str(tmp_path / "m.json"))
    with pytest.raises(ValueError, match="64 lower-case hex"):
        catalog.entries()
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        monkeypatch.delenv(catalog.ENV_MODELS)
        catalog.entry("nope")
