"""Inputs given as URLs: a local HTTP server with byte ranges, file:// URLs, clear errors."""

from __future__ import annotations

import http.server
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.io.reader import count_entries, inspect_tree, read_events, resolve_files
from hepgen.io.writer import RootWriter, write_events

_RANGE = re.compile(r"(\d*)-(\d*)")


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves the files of ``root`` with HEAD, GET and ``Range`` (single and multipart)
    requests, as a web server holding ROOT files does; counts the requests it answered."""

    root: Path
    requests: list[str]

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _data(self) -> bytes | None:
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return None
        return path.read_bytes()

    def do_HEAD(self) -> None:  # the name http.server calls
        self.requests.append("HEAD")
        data = self._data()
        if data is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

    def do_GET(self) -> None:
        data = self._data()
        if data is None:
            return
        header = self.headers.get("Range")
        if header is None:
            self.requests.append("GET")
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        ranges = []
        for part in header.removeprefix("bytes=").split(","):
            first, last = _RANGE.fullmatch(part.strip()).groups()  # type: ignore[union-attr]
            if first == "":  # suffix range: the last N bytes
                start, stop = len(data) - int(last), len(data)
            else:
                start, stop = int(first), min(int(last) + 1 if last else len(data), len(data))
            ranges.append((start, stop))
        self.requests.append(f"GET {len(ranges)} range(s)")
        self.send_response(206)
        if len(ranges) == 1:
            start, stop = ranges[0]
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
            self.send_header("Content-Length", str(stop - start))
            self.end_headers()
            self.wfile.write(data[start:stop])
            return
        boundary = "hepgen-test-boundary"
        body = b""
        for start, stop in ranges:
            body += (
                (
                    f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Range: bytes {start}-{stop - 1}/{len(data)}\r\n\r\n"
                ).encode()
                + data[start:stop]
                + b"\r\n"
            )
        body += f"--{boundary}--\r\n".encode()
        self.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, served folder, log of requests) of an HTTP server on 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    requests: list[str] = []
    handler = type("Handler", (RangeHandler,), {"root": root, "requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def _events(n: int, seed: int) -> ak.Array:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, n)
    return ak.Array(
        {
            "run": np.full(n, seed, dtype=np.uint32),
            "MET_pt": rng.exponential(30, n).astype(np.float32),
            "Jet_pt": ak.unflatten(rng.exponential(40, counts.sum()), counts),
        }
    )


@pytest.fixture(scope="module")
def served(server) -> dict[str, ak.Array]:
    """A TTree file and an RNTuple file in the served folder; name -> events written."""
    _, root, _ = server
    events = {"a.root": _events(3000, 1), "b.root": _events(2000, 2)}
    write_events(root / "a.root", events["a.root"], fmt="ttree")
    write_events(root / "b.root", events["b.root"], fmt="rntuple")
    return events


def test_http_inputs_are_read_with_range_requests(server, served):
    base, root, requests = server
    urls = [f"{base}/a.root", f"{base}/b.root"]
    assert resolve_files(urls) == urls  # URLs kept as strings, not refused as missing files
    assert count_entries(urls) == 5000
    info = inspect_tree(urls[1])
    assert info.path == urls[1] and info.format == "rntuple"
    assert info.collections == {"Jet": ("Jet_pt",)}
    events = read_events(urls, ["run", "MET_pt", "Jet_pt"], step_size=700)
    local = read_events([root / "a.root", root / "b.root"], ["run", "MET_pt", "Jet_pt"])
    assert len(events) == 5000
    for name in ("run", "MET_pt", "Jet_pt"):
        assert ak.array_equal(events[name], local[name])
        assert str(ak.type(events[name])) == str(ak.type(local[name]))
    assert any(r.startswith("GET") and "range" in r for r in requests)
    assert "GET" not in requests  # never the whole file


def test_url_list_mixes_with_local_files_and_globs(server, served, tmp_path):
    base, _, _ = server
    write_events(tmp_path / "c1.root", _events(100, 3))
    write_events(tmp_path / "c2.root", _events(50, 4), fmt="rntuple")
    files = resolve_files([f"{base}/a.root", str(tmp_path / "c*.root")])
    assert files == [f"{base}/a.root", tmp_path / "c1.root", tmp_path / "c2.root"]
    events = read_events(files, ["run"])
    assert np.array_equal(np.unique(np.asarray(events["run"])), [1, 3, 4])
    assert len(events) == 3150


def test_file_urls_are_local_paths(served, server, tmp_path):
    _, root, _ = server
    url = (root / "b.root").as_uri()
    assert url.startswith("file:///")
    assert resolve_files([url]) == [root / "b.root"]
    assert len(read_events(url, ["run"])) == 2000
    with pytest.raises(InputError, match=r"file '.*nothere\.root' does not exist"):
        resolve_files((tmp_path / "nothere.root").as_uri())


def test_unreachable_and_missing_urls_are_one_line_errors(server, served):
    base, _, _ = server
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/x.root"
    with pytest.raises(InputError, match=rf"cannot open '{re.escape(dead)}'") as info:
        read_events(dead)
    assert "\n" not in str(info.value)
    missing = f"{base}/missing.root"
    with pytest.raises(InputError, match=rf"cannot open '{re.escape(missing)}'.*404") as info:
        inspect_tree(missing)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=r"URL scheme 's3://' is not supported"):
        resolve_files("s3://bucket/x.root")


def test_root_urls_go_to_uproot_and_name_the_missing_bindings(monkeypatch):
    pytest.importorskip("uproot")
    try:
        import XRootD  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("XRootD bindings installed: no error to check")
    url = "root://127.0.0.1//store/x.root"
    assert resolve_files(url) == [url]
    with pytest.raises(InputError, match=rf"cannot open '{re.escape(url)}'") as info:
        inspect_tree(url)
    assert "\n" not in str(info.value)


def test_outputs_stay_local(server, served, tmp_path, capsys):
    base, _, _ = server
    with pytest.raises(InputError, match=r"output 'https://host/out.root' is a URL"):
        RootWriter("https://host/out.root")
    code = main(["inspect", f"{base}/b.root", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "2000 events" in out and "Jet_pt" in out
    code = main(["generate", str(tmp_path), f"{base}/b.root", "-o", "http://host/o.root"])
    assert code == 2
    assert "is a URL" in capsys.readouterr().err


def test_validate_reads_a_url_and_an_rntuple(server, served, tmp_path, capsys):
    """validate: reference over HTTP (a TTree), candidate a local RNTuple."""
    import json

    base, root, _ = server
    out = tmp_path / "report"
    argv = ["validate", f"{base}/a.root", str(root / "b.root"), "-o", str(out), "--quiet"]
    code = main([*argv, "--metrics", "ks", "--no-baseline", "--max-plots", "0"])
    assert code in (0, 1), capsys.readouterr().err  # 1: the samples differ (other seeds)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_reference"] == 3000 and metrics["n_candidate"] == 2000
    assert "MET_pt" in metrics["features"]


def test_config_files_and_provenance_keep_urls(tmp_path):
    from hepgen.config import load_config
    from hepgen.provenance import provenance
    from hepgen.resources import config_path

    url = "https://opendata.example/store/ttbar.root"
    text = config_path("toy_jets.yaml").read_text().replace("files: []", f"files: [{url}, a.root]")
    (tmp_path / "cfg.yaml").write_text(text)
    config = load_config(tmp_path / "cfg.yaml")
    assert config.input_files() == [url, str(tmp_path / "a.root")]
    record = provenance([url], seed=1)["inputs"]
    assert record == [{"url": url, "sha256": None}]  # not downloaded to be hashed
