"""Downloading a MAWI day: the samplepoint-F trace and the day's MAWILab labels.

URL layouts of the public archives:

- MAWI trace: ``{base_url}/mawi/samplepoint-F/YYYY/YYYYMMDDhhmm.pcap.gz`` (recent
  years) or ``.dump.gz`` (older years); both are tried, in that order. The daily
  trace starts at 14:00 JST (``time="1400"``) and lasts 15 minutes.
- MAWILab v1.1 labels:
  ``{mawilab_url}/YYYY/MM/DD/YYYYMMDD_{anomalous_suspicious,notice}.{xml,csv}``.

Each file is fetched with ``requests`` into ``<name>.part``; a broken transfer is
resumed with an HTTP ``Range`` request (a server that answers a range with the
whole file makes the download start over), and a rerun resumes a ``.part`` left
by an earlier run. A file is accepted when its size equals what the server
announced (``Content-Length``, or the total of ``Content-Range``), when a
``.gz`` file decompresses to its end with a correct CRC-32, and, when a SHA-256
is given for it, when that agrees; only then is it renamed to its final name.
"""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import pathlib
import re
import time as time_module
import zlib
from collections.abc import Mapping

import requests
from absl import logging
from tqdm import tqdm

MAWI_BASE_URL = "http://mawi.wide.ad.jp"
MAWILAB_URL = "http://www.fukuda-lab.org/mawilab/v1.1"
TRACE_SUFFIXES = (".pcap.gz", ".dump.gz")
LABEL_FILES = (
    "anomalous_suspicious.xml",
    "anomalous_suspicious.csv",
    "notice.xml",
    "notice.csv",
)
CHUNK_BYTES = 1 << 20  # reading files
NETWORK_CHUNK_BYTES = 1 << 16  # a broken transfer loses at most one such chunk


class FetchError(RuntimeError):
    """A download that failed or a file that did not check out."""


class NotFoundError(FetchError):
    """The server has no such file (HTTP 404)."""


@dataclasses.dataclass
class FetchResult:
    """What ``fetch_mawi_day`` wrote, and which label URLs did not exist."""

    trace_path: pathlib.Path
    label_paths: list[pathlib.Path]
    missing_urls: list[str]
    bytes_downloaded: int


def trace_urls(
    day: str, time: str = "1400", base_url: str = MAWI_BASE_URL
) -> list[str]:
    """Candidate URLs of a day's samplepoint-F trace, newest naming first."""
    base = base_url.rstrip("/")
    return [
        f"{base}/mawi/samplepoint-F/{day[:4]}/{day}{time}{suffix}"
        for suffix in TRACE_SUFFIXES
    ]


def label_urls(day: str, mawilab_url: str = MAWILAB_URL) -> list[str]:
    """URLs of a day's four MAWILab label files (XML before CSV)."""
    base = mawilab_url.rstrip("/")
    folder = f"{base}/{day[:4]}/{day[4:6]}/{day[6:8]}"
    return [f"{folder}/{day}_{name}" for name in LABEL_FILES]


def _total_from(response: requests.Response, already: int) -> int | None:
    """The full size of the file from a 200 or 206 answer, when announced."""
    if response.status_code == 206:
        content_range = response.headers.get("Content-Range", "")
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range.strip())
        if not match or int(match.group(1)) != already:
            raise FetchError(
                f"{response.url}: asked for bytes from {already}, server answered "
                f"Content-Range {content_range!r}"
            )
        return None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def check_gzip(path: pathlib.Path) -> int:
    """Decompress ``path`` to its end; raise ``FetchError`` unless CRC and size hold.

    Returns the decompressed size in bytes.
    """
    size = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                size += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise FetchError(
            f"{path}: gzip check failed after {size} bytes: {error}"
        ) from None
    return size


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    path: pathlib.Path,
    *,
    session: requests.Session | None = None,
    sha256: str | None = None,
    progress: bool = True,
    attempts: int = 5,
    chunk_bytes: int = NETWORK_CHUNK_BYTES,
    timeout_s: float = 60.0,
) -> int:
    """Download ``url`` to ``path``, resuming a broken transfer; bytes fetched.

    Raises ``NotFoundError`` on HTTP 404 and ``FetchError`` when the file cannot be
    completed in ``attempts`` tries or fails its size, gzip or SHA-256 check.
    A file already at ``path`` is kept as it is.
    """
    path = pathlib.Path(path)
    if path.exists():
        logging.info("%s already present, not fetched again", path)
        return 0
    session = session or requests.Session()
    part = path.with_name(path.name + ".part")
    fetched = 0
    total = None
    for attempt in range(1, attempts + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with session.get(
                url, headers=headers, stream=True, timeout=timeout_s
            ) as response:
                if response.status_code == 404:
                    raise NotFoundError(f"{url}: not found (HTTP 404)")
                if response.status_code == 416 and have:
                    # Nothing left to send: the part may already be whole.
                    announced = response.headers.get("Content-Range", "")
                    match = re.fullmatch(r"bytes \*/(\d+)", announced.strip())
                    if match and int(match.group(1)) == have:
                        total = have
                        break
                    part.unlink()
                    continue
                if response.status_code not in (200, 206):
                    raise FetchError(f"{url}: HTTP {response.status_code}")
                if response.status_code == 200 and have:
                    logging.warning("%s: server ignored the range; starting over", url)
                    have = 0
                total = _total_from(response, have)
                mode = "ab" if have else "wb"
                with (
                    open(part, mode) as file,
                    tqdm(
                        total=total,
                        initial=have,
                        unit="B",
                        unit_scale=True,
                        desc=path.name,
                        disable=not progress,
                    ) as bar,
                ):
                    for chunk in response.iter_content(chunk_size=chunk_bytes):
                        file.write(chunk)
                        fetched += len(chunk)
                        bar.update(len(chunk))
        except (requests.ConnectionError, requests.Timeout) as error:
            logging.warning(
                "%s: transfer broken on attempt %d of %d (%s); resuming",
                url,
                attempt,
                attempts,
                type(error).__name__,
            )
            time_module.sleep(min(0.2 * attempt, 2.0))
            continue
        except requests.exceptions.ChunkedEncodingError as error:
            logging.warning("%s: transfer broken (%s); resuming", url, error)
            continue
        size = part.stat().st_size
        if total is None or size == total:
            total = size if total is None else total
            break
        if size > total:
            part.unlink()
            raise FetchError(
                f"{url}: got {size} bytes, more than the {total} announced"
            )
        logging.warning(
            "%s: %d of %d bytes after attempt %d; resuming", url, size, total, attempt
        )
    else:
        raise FetchError(f"{url}: not complete after {attempts} attempts")

    size = part.stat().st_size
    if total is not None and size != total:
        raise FetchError(f"{url}: size {size} bytes, server announced {total}")
    if path.name.endswith(".gz"):
        check_gzip(part)
    if sha256 is not None and _sha256(part) != sha256.lower():
        raise FetchError(f"{url}: SHA-256 does not match the one given")
    part.rename(path)
    logging.info(
        "%s: %d bytes written to %s (%d fetched now)", url, size, path, fetched
    )
    return fetched


def fetch_mawi_day(
    day: str,
    out_dir: str | pathlib.Path,
    *,
    time: str = "1400",
    base_url: str = MAWI_BASE_URL,
    mawilab_url: str = MAWILAB_URL,
    progress: bool = True,
    sha256: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
) -> FetchResult:
    """Download a day's samplepoint-F trace and its MAWILab labels into ``out_dir``.

    Args:
      day: "YYYYMMDD".
      out_dir: folder for the files (created); names as on the archives.
      time: "hhmm" (JST) of the trace, "1400" for the daily trace.
      base_url, mawilab_url: archive roots (a mirror, or a local test server).
      progress: show a progress bar per file.
      sha256: optional file name -> expected SHA-256 hex digest.
      session: a ``requests.Session`` to reuse.

    The label files come first (small, and a day MAWILab has not labelled yet
    fails before gigabytes are fetched); a missing notice file or a missing CSV
    twin is only logged. Raises ``FetchError`` when no anomalous/suspicious file
    or no trace exists.
    """
    try:
        datetime.datetime.strptime(day, "%Y%m%d")
    except ValueError:
        raise ValueError(f"day: expected YYYYMMDD, found {day!r}") from None
    if not re.fullmatch(r"\d{4}", time):
        raise ValueError(f"time: expected hhmm, found {time!r}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    session = session or requests.Session()
    sha256 = dict(sha256 or {})
    started = time_module.monotonic()

    def fetch(url: str) -> tuple[pathlib.Path, int]:
        name = url.rsplit("/", 1)[-1]
        target = out_dir / name
        fetched = download(
            url, target, session=session, sha256=sha256.get(name), progress=progress
        )
        return target, fetched

    labels, missing, total = [], [], 0
    for url in label_urls(day, mawilab_url):
        try:
            target, fetched = fetch(url)
        except NotFoundError:
            logging.warning("%s: not on the MAWILab archive", url)
            missing.append(url)
            continue
        labels.append(target)
        total += fetched
    if not any("anomalous_suspicious" in p.name for p in labels):
        raise FetchError(
            f"no MAWILab anomalous/suspicious file for {day} at {mawilab_url} "
            "(MAWILab may not have labelled this day yet)"
        )

    trace = None
    for url in trace_urls(day, time, base_url):
        try:
            trace, fetched = fetch(url)
        except NotFoundError:
            missing.append(url)
            continue
        total += fetched
        break
    if trace is None:
        raise FetchError(f"no samplepoint-F trace for {day} {time} at {base_url}")
    seconds = max(time_module.monotonic() - started, 1e-9)
    logging.info(
        "MAWI day %s: %d files, %.1f MB fetched in %.0f s (%.1f MB/s)",
        day,
        len(labels) + 1,
        total / 1e6,
        seconds,
        total / 1e6 / seconds,
    )
    return FetchResult(
        trace_path=trace,
        label_paths=labels,
        missing_urls=missing,
        bytes_downloaded=total,
    )
