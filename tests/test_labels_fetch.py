"""Fetching a MAWI day from a local server laid out like the public archives."""

import gzip
import hashlib
import http.server
import re
import threading

import numpy as np
import pytest

from stfe_jax.labels.fetch import FetchError, download, fetch_mawi_day
from stfe_jax.labels.mawilab import read_mawilab

DAY = "20200701"
TRACE_PATH = "/mawi/samplepoint-F/2020/202007011400.pcap.gz"
LABEL_DIR = "/mawilab/v1.1/2020/07/01"
XML = """<?xml version="1.0" encoding="UTF-8"?>
<admd:annotation xmlns:admd="http://www.nict.go.jp/admd">
  <anomaly type="anomalous" value="0.6,0.1,10,3,ntscSYN">
    <slice><filter src_ip="10.0.0.1"/></slice>
    <from sec="1593579600" usec="0"/><to sec="1593579700" usec="0"/>
  </anomaly>
</admd:annotation>
"""
CSV = (
    "anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy, heuristic, distance, "
    "nbDetectors, label\n0,10.0.0.1,,,,ntscSYN,0.5,3,anomalous\n"
)


class Archive(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes) with Range support; can break transfers."""

    files: dict[str, bytes] = {}
    break_after: dict[str, int] = {}  # path -> bytes sent before hanging up, once
    ignore_range: set[str] = set()
    requests_seen: list[tuple[str, str | None]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests_seen.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        wanted = self.headers.get("Range")
        if wanted and self.path not in self.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header(
                "Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}"
            )
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.break_after.pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[start : start + cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def archive():
    rng = np.random.default_rng(0)
    # A stand-in trace: random bytes compress to themselves, ~400 kB gzipped.
    trace = gzip.compress(rng.integers(0, 256, 400_000, dtype=np.uint8).tobytes())
    Archive.files = {
        TRACE_PATH: trace,
        f"{LABEL_DIR}/{DAY}_anomalous_suspicious.xml": XML.encode(),
        f"{LABEL_DIR}/{DAY}_anomalous_suspicious.csv": CSV.encode(),
    }
    Archive.break_after = {}
    Archive.ignore_range = set()
    Archive.requests_seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Archive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield url, trace
    server.shutdown()
    server.server_close()


def fetch(url, out_dir, **kwargs):
    return fetch_mawi_day(
        DAY,
        out_dir,
        base_url=url,
        mawilab_url=f"{url}/mawilab/v1.1",
        progress=False,
        **kwargs,
    )


def test_day_fetched_with_a_broken_transfer_resumed(archive, tmp_path):
    url, trace = archive
    Archive.break_after[TRACE_PATH] = 150_000
    result = fetch(url, tmp_path / "day")

    assert result.trace_path.name == "202007011400.pcap.gz"
    assert result.trace_path.read_bytes() == trace
    assert [p.name for p in result.label_paths] == [
        f"{DAY}_anomalous_suspicious.xml",
        f"{DAY}_anomalous_suspicious.csv",
    ]
    assert sorted(u.rsplit("/", 1)[-1] for u in result.missing_urls) == [
        f"{DAY}_notice.csv",
        f"{DAY}_notice.xml",
    ]
    # The trace took two requests: the whole file, broken, then the rest by range.
    # (The bytes of the chunk being read when the connection broke are lost.)
    trace_requests = [r for p, r in Archive.requests_seen if p == TRACE_PATH]
    assert len(trace_requests) == 2 and trace_requests[0] is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", trace_requests[1]).group(1))
    assert 0 < resumed_at <= 150_000
    assert result.bytes_downloaded == len(trace) + len(XML) + len(CSV)
    assert read_mawilab(result.label_paths[0])[0].taxonomy == "ntscSYN"
    assert not list((tmp_path / "day").glob("*.part"))


def test_part_left_by_an_earlier_run_is_resumed(archive, tmp_path):
    url, trace = archive
    target = tmp_path / "trace.pcap.gz"
    (tmp_path / "trace.pcap.gz.part").write_bytes(trace[:1000])
    fetched = download(url + TRACE_PATH, target, progress=False)
    assert fetched == len(trace) - 1000
    assert target.read_bytes() == trace
    assert Archive.requests_seen == [(TRACE_PATH, "bytes=1000-")]


def test_server_ignoring_ranges_restarts(archive, tmp_path):
    url, trace = archive
    Archive.ignore_range.add(TRACE_PATH)
    target = tmp_path / "trace.pcap.gz"
    (tmp_path / "trace.pcap.gz.part").write_bytes(b"junk" * 100)
    download(url + TRACE_PATH, target, progress=False)
    assert (
        hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(trace).digest()
    )


def test_corrupt_gzip_and_wrong_checksum_are_refused(archive, tmp_path):
    url, trace = archive
    broken = bytearray(trace)
    broken[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    Archive.files[TRACE_PATH] = bytes(broken)
    with pytest.raises(FetchError, match="gzip check failed"):
        download(url + TRACE_PATH, tmp_path / "a.pcap.gz", progress=False)
    assert not (tmp_path / "a.pcap.gz").exists()

    Archive.files[TRACE_PATH] = trace
    with pytest.raises(FetchError, match="SHA-256"):
        download(
            url + TRACE_PATH, tmp_path / "b.pcap.gz", progress=False, sha256="00" * 32
        )
    good = hashlib.sha256(trace).hexdigest()
    download(url + TRACE_PATH, tmp_path / "c.pcap.gz", progress=False, sha256=good)
    assert (tmp_path / "c.pcap.gz").read_bytes() == trace


def test_older_dump_name_and_missing_labels(archive, tmp_path):
    url, trace = archive
    Archive.files["/mawi/samplepoint-F/2020/202007011400.dump.gz"] = Archive.files.pop(
        TRACE_PATH
    )
    result = fetch(url, tmp_path / "old")
    assert result.trace_path.name == "202007011400.dump.gz"
    assert url + TRACE_PATH in result.missing_urls

    for name in list(Archive.files):
        if "mawilab" in name:
            del Archive.files[name]
    with pytest.raises(FetchError, match="no MAWILab anomalous/suspicious file"):
        fetch(url, tmp_path / "unlabelled")
    with pytest.raises(ValueError, match="YYYYMMDD"):
        fetch_mawi_day("2020-07-01", tmp_path)
