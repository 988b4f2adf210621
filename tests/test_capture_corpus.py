"""Every real capture of ../shared/captures is read without a crash or a hang, and
its counts agree with tshark's (ORACLE.tsv) wherever tshark read it cleanly,
except the differences listed with their reasons in
``tests/data/capture_oracle_differences.tsv``."""

import csv
import pathlib
import time

from stfe_jax.capture.summary import summarize_capture

COLUMNS = (
    "packets",
    "ipv4",
    "ipv6",
    "tcp",
    "udp",
    "ip_fragments",
    "tcp_udp_conversations",
)
DIFFERENCES = pathlib.Path(__file__).parent / "data" / "capture_oracle_differences.tsv"
# No single capture of the corpus (the largest is a few MB) may take this long.
MAX_SECONDS_PER_FILE = 60.0


def read_tsv(path: pathlib.Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_corpus_counts_agree_with_tshark(shared_dir):
    captures = shared_dir / "captures"
    oracle = read_tsv(captures / "ORACLE.tsv")
    listed = {
        (row["path"], row["column"]): row["reason"] for row in read_tsv(DIFFERENCES)
    }
    assert all(reason.strip() for reason in listed.values())

    unexplained, slow, crashed = [], [], []
    differing = set()
    for row in oracle:
        started = time.monotonic()
        summary = summarize_capture(captures / row["path"])
        elapsed = time.monotonic() - started
        if elapsed > MAX_SECONDS_PER_FILE:
            slow.append(f"{row['path']}: {elapsed:.1f} s")
        if summary["format"] is None and summary["error"] is None:
            crashed.append(row["path"])
        if row["tshark_exit"] != "0":
            continue  # tshark stopped early: only "no crash, no hang" applies
        for column in COLUMNS:
            ours, theirs = summary[column], int(row[column])
            if ours != theirs:
                differing.add((row["path"], column))
                if (row["path"], column) not in listed:
                    unexplained.append(
                        f"{row['path']} {column}: ours {ours}, tshark {theirs}"
                    )
    stale = sorted(set(listed) - differing)

    assert not crashed, crashed
    assert not slow, slow
    assert not unexplained, "\n".join(unexplained)
    assert not stale, f"listed differences that now agree (remove them): {stale}"
    assert len(oracle) > 3000


def test_damaged_corpus_files_report_why(shared_dir):
    """Files tshark could not read to the end: we say why, or read them whole."""
    captures = shared_dir / "captures"
    damaged = [
        row for row in read_tsv(captures / "ORACLE.tsv") if row["tshark_exit"] != "0"
    ]
    assert damaged
    for row in damaged:
        summary = summarize_capture(captures / row["path"])
        assert summary["packets"] >= 0
        if summary["error"] is not None:
            assert row["path"] in summary["error"] and "offset" in summary["error"]
