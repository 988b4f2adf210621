"""Flow keys on real captures against tshark: the distinct bidirectional TCP/UDP
conversations our flows name equal tshark's count (``ORACLE.tsv``)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from stfe_jax.capture import open_capture
from stfe_jax.flows import cut_flows

MAX_CAPTURES = 40


def oracle_rows(shared_dir) -> list[dict]:
    """Ethernet captures tshark read to their end, without IP fragments (tshark
    counts no conversation for a fragment without its transport header)."""
    captures = shared_dir / "captures"
    with open(captures / "MANIFEST.tsv", encoding="utf-8") as f:
        formats = {
            row["path"]: row["format"] for row in csv.DictReader(f, delimiter="\t")
        }
    with open(captures / "ORACLE.tsv", encoding="utf-8") as f:
        rows = [
            row
            for row in csv.DictReader(f, delimiter="\t")
            if row["tshark_exit"] == "0"
            and "EN10MB" in formats.get(row["path"], "")
            and int(row["packets"]) >= 50
            and int(row["ip_fragments"]) == 0
        ]
    return rows[:MAX_CAPTURES]


def conversations(path) -> int:
    """Distinct (protocol, two address/port ends) of our TCP and UDP flows."""
    keys = set()
    with open_capture(path) as capture:
        for flows in cut_flows(capture.batches(), {}):
            for i in np.flatnonzero((flows.protocol == 6) | (flows.protocol == 17)):
                ends = sorted(
                    [
                        (bytes(flows.src_addr[i]), int(flows.src_port[i])),
                        (bytes(flows.dst_addr[i]), int(flows.dst_port[i])),
                    ]
                )
                keys.add((int(flows.protocol[i]), *ends))
    return len(keys)


def test_tcp_udp_conversations_match_tshark(shared_dir):
    rows = oracle_rows(shared_dir)
    if not rows:
        pytest.skip("no Ethernet captures without fragments in ORACLE.tsv")
    differing = [
        (row["path"], found, int(row["tcp_udp_conversations"]))
        for row in rows
        if (found := conversations(shared_dir / "captures" / row["path"]))
        != int(row["tcp_udp_conversations"])
    ]
    assert not differing, differing
    assert len(rows) == MAX_CAPTURES


def test_every_fragment_is_joined_dropped_or_opens_its_datagram(shared_dir):
    captures = shared_dir / "captures"
    with open(captures / "ORACLE.tsv", encoding="utf-8") as f:
        rows = [
            row
            for row in csv.DictReader(f, delimiter="\t")
            if row["tshark_exit"] == "0"
            and 0 < int(row["ip_fragments"])
            and int(row["packets"]) < 20000
        ][:10]
    if not rows:
        pytest.skip("no captures with IP fragments in ORACLE.tsv")
    later_fragments = 0
    for row in rows:
        first_fragments = 0
        with open_capture(captures / row["path"]) as capture:

            def counted(batches):
                nonlocal first_fragments
                for batch in batches:
                    first = batch.is_fragment & (batch.frag_offset == 0)
                    first_fragments += int(first.sum())
                    yield batch

            stream = cut_flows(counted(capture.batches()), {})
            for _ in stream:
                pass
        stats = stream.stats
        total = first_fragments + stats.fragments_joined + stats.fragments_dropped
        assert total == int(row["ip_fragments"]), row["path"]
        later_fragments += stats.fragments_joined + stats.fragments_dropped
    assert later_fragments > 0
