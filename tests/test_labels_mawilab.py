"""Reading MAWILab files: the real CSVs, admd XML written as MAWILab publishes it."""

import collections

import pytest

from stfe_jax.labels.mawilab import MawilabFormatError, read_mawilab

# Hand counts of the real files, taken once from their raw text (e.g. for the
# rows: `awk -F, 'NR>1{print NF}'` says every row has 9 fields; anomalies are the
# distinct values of the first field; the label is the last field):
# 20191121: 245 rows = filters, 173 anomalies (65 anomalous, 108 suspicious),
#           rows per label 103 anomalous, 142 suspicious; filters setting 1, 2, 3,
#           4 of the four address/port fields: 24, 148, 53, 20.
# 20201110: 216 rows = filters, 146 anomalies (42 anomalous, 104 suspicious),
#           rows per label 82 anomalous, 134 suspicious.
REAL_COUNTS = {
    "20191121": (245, 173, 65, 108, 103, 142),
    "20201110": (216, 146, 42, 104, 82, 134),
}


@pytest.mark.parametrize("day", sorted(REAL_COUNTS))
def test_real_csv_counts(shared_dir, day):
    path = shared_dir / "datasets" / "mawi" / f"{day}_anomalous_suspicious.csv"
    anomalies = read_mawilab(path)
    filters, n_anomalies, anomalous, suspicious, rows_anom, rows_susp = REAL_COUNTS[day]

    assert len(anomalies) == n_anomalies
    assert sum(len(a.filters) for a in anomalies) == filters
    by_label = collections.Counter(a.label for a in anomalies)
    assert by_label == {"anomalous": anomalous, "suspicious": suspicious}
    rows_by_label = collections.Counter()
    for anomaly in anomalies:
        rows_by_label[anomaly.label] += len(anomaly.filters)
    assert rows_by_label == {"anomalous": rows_anom, "suspicious": rows_susp}
    # Nine-field rows carry no heuristic and no time window.
    assert all(a.heuristic is None for a in anomalies)
    assert all(
        f.t_from_s is None and f.t_to_s is None for a in anomalies for f in a.filters
    )


def test_real_csv_rows_parse_by_shape(shared_dir):
    path = shared_dir / "datasets" / "mawi" / "20191121_anomalous_suspicious.csv"
    anomalies = {a.anomaly_id: a for a in read_mawilab(path)}

    # Lines 2-3: anomaly 0, two filters, srcPort and dstPort empty (wildcards).
    first = anomalies[0]
    assert first.taxonomy == "ipv4gretun"
    assert first.distance == pytest.approx(0.23108)
    assert first.nb_detectors == 6
    assert [(f.src_ip, f.dst_ip) for f in first.filters] == [
        ("203.180.193.203", "206.108.229.126"),
        ("203.180.193.203", "204.206.44.225"),
    ]
    assert all(f.src_port is None and f.dst_port is None for f in first.filters)
    # Line 6: "4,37.201.152.38,14676,,5060,ntscUDPOther,0.02434,3,anomalous".
    udp = anomalies[4].filters[0]
    assert (udp.src_ip, udp.src_port, udp.dst_ip, udp.dst_port) == (
        "37.201.152.38",
        14676,
        None,
        5060,
    )
    assert anomalies[4].taxonomy == "ntscUDPOther"

    fields = collections.Counter(
        f.fields_set for a in anomalies.values() for f in a.filters
    )
    assert fields == {1: 24, 2: 148, 3: 53, 4: 20}


HEADER = (
    "anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy, heuristic, distance, "
    "nbDetectors, label\n"
)


def test_csv_ten_field_rows_carry_heuristic(tmp_path):
    path = tmp_path / "20200101_notice.csv"
    path.write_text(
        HEADER
        + "0,10.1.1.1,,,80,mptp,500,0.1,2,notice\n"
        + "0,10.1.1.2,,,80,mptp,500,0.1,2,notice\n"
        + "1,,,10.2.2.2,,heavy_hitter,999,0.3,1,notice\n"
    )
    anomalies = read_mawilab(path)
    assert [(a.anomaly_id, a.heuristic, len(a.filters)) for a in anomalies] == [
        (0, 500, 2),
        (1, 999, 1),
    ]
    assert anomalies[1].filters[0].dst_ip == "10.2.2.2"
    assert anomalies[1].distance == pytest.approx(0.3)


def test_csv_row_of_wrong_shape_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER
        + "0,10.1.1.1,,,80,mptp,0.1,2,anomalous\n"
        + "1,10.1.1.1,,,80,mptp,0.1,anomalous\n"
    )
    with pytest.raises(
        MawilabFormatError, match=r"bad\.csv: line 3: expected 9 .* found 8"
    ):
        read_mawilab(path)


def test_csv_bad_field_names_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "0,10.1.1.999,,,80,mptp,0.1,2,anomalous\n")
    with pytest.raises(MawilabFormatError, match=r"line 2: expected an IP address"):
        read_mawilab(path)
    path.write_text(HEADER + "0,10.1.1.1,,,80,mptp,0.1,2,weird\n")
    with pytest.raises(MawilabFormatError, match=r"line 2: expected a label"):
        read_mawilab(path)


def test_unknown_content_is_refused(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(MawilabFormatError, match=r"x\.csv: line 1"):
        read_mawilab(path)


# An admd annotation shaped as MAWILab publishes it: the root admd:annotation,
# algorithm/analysis/dataset blocks, then anomalies with type (the label) and
# value "Dn,Da,C0,V,C1" (distances, heuristic code, detectors, taxonomy), a
# description (the community graph), slices of filters, and from/to times with
# sec/usec where 0 and 2147483645 mean "not set".
XML = """<?xml version="1.0" encoding="UTF-8"?>
<admd:annotation xmlns:admd="http://www.nict.go.jp/admd"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://www.nict.go.jp/admd admd.xsd">
  <algorithm><name>MAWILab</name><version>1.1</version></algorithm>
  <analysis><description>MAWILab</description></analysis>
  <dataset><name>http://mawi.wide.ad.jp/mawi/samplepoint-F/2020/202007011400.html</name></dataset>
  <anomaly type="anomalous" value="0.61,0.12,10,3,ntscSYN">
    <description>digraph community { a -> b; }</description>
    <slice>
      <filter src_ip="10.0.0.1"/>
    </slice>
    <from sec="1593579600" usec="0"/>
    <to sec="1593579700" usec="250000"/>
  </anomaly>
  <anomaly type="suspicious" value="0.22,0.31,53,1,ptmp">
    <description>digraph community { c -> d; }</description>
    <slice>
      <filter src_ip="10.0.0.2" dst_port="53"/>
      <filter src_ip="10.0.0.3"/>
    </slice>
    <from sec="0" usec="0"/>
    <to sec="2147483645" usec="0"/>
  </anomaly>
  <anomaly type="anomalous" value="0.5,0.2,999,4,DDoSUDP">
    <slice>
      <filter dst_ip="10.0.0.9" dst_port="123" proto="udp"/>
      <from sec="1593579650" usec="500000"/>
      <to sec="1593579660" usec="0"/>
    </slice>
  </anomaly>
</admd:annotation>
"""


def test_xml_anomalies_filters_and_windows(tmp_path):
    path = tmp_path / "20200701_anomalous_suspicious.xml"
    path.write_text(XML)
    anomalies = read_mawilab(path)

    assert [(a.anomaly_id, a.label, a.taxonomy, a.heuristic) for a in anomalies] == [
        (0, "anomalous", "ntscSYN", 10),
        (1, "suspicious", "ptmp", 53),
        (2, "anomalous", "DDoSUDP", 999),
    ]
    scan = anomalies[0].filters[0]
    assert scan.src_ip == "10.0.0.1" and scan.dst_ip is None and scan.src_port is None
    assert scan.t_from_s == 1593579600.0
    assert scan.t_to_s == pytest.approx(1593579700.25)
    # 0 and 2147483645 are unset times.
    assert [
        (f.src_ip, f.dst_port, f.t_from_s, f.t_to_s) for f in anomalies[1].filters
    ] == [
        ("10.0.0.2", 53, None, None),
        ("10.0.0.3", None, None, None),
    ]
    # A window on the slice applies to its filters; proto by name.
    flood = anomalies[2].filters[0]
    assert (flood.dst_ip, flood.dst_port, flood.proto) == ("10.0.0.9", 123, 17)
    assert flood.t_from_s == pytest.approx(1593579650.5)
    assert flood.t_to_s == 1593579660.0


def test_broken_xml_names_line(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text(XML[: XML.index('<anomaly type="suspicious"') + 40])
    with pytest.raises(MawilabFormatError, match=r"broken\.xml: line \d+"):
        read_mawilab(path)


def test_csv_notice_rows_without_anomaly_id(tmp_path):
    # The notice shape: nine fields, no anomalyID, heuristic kept; a row each.
    path = tmp_path / "20200101_notice.csv"
    path.write_text(
        HEADER
        + "10.1.1.1,,,80,mptp,500,0.1,2,notice\n"
        + ",,10.2.2.2,,heavy_hitter,999,-0.3,1,notice\n"
    )
    anomalies = read_mawilab(path)
    assert [(a.anomaly_id, a.heuristic, a.taxonomy) for a in anomalies] == [
        (0, 500, "mptp"),
        (1, 999, "heavy_hitter"),
    ]
    assert anomalies[0].filters[0].src_ip == "10.1.1.1"
    assert anomalies[0].filters[0].dst_port == 80
    assert anomalies[1].filters[0].dst_ip == "10.2.2.2"
    assert anomalies[1].distance == pytest.approx(-0.3)
    assert all(a.label == "notice" for a in anomalies)


def test_reads_the_synthetic_day_writer(tmp_path):
    """The generated day's label files read back to the anomalies it injected."""
    mawi_day = pytest.importorskip("stfe_jax.synth.mawi_day")
    day = mawi_day.generate_day(tmp_path, seed=3, scale=0.05)
    truth = {
        (a.label == "notice", a.anomaly_id): a for a in day.anomalies
    }  # ids restart in the notice file
    protocols = {"tcp": 6, "udp": 17, "icmp": 1, None: None}
    for path in day.label_paths:
        is_xml = path.suffix == ".xml"
        anomalies = read_mawilab(path)
        assert anomalies, path
        for anomaly in anomalies:
            expected = truth[(anomaly.label == "notice", anomaly.anomaly_id)]
            assert (anomaly.label, anomaly.taxonomy) == (
                expected.label,
                expected.taxonomy,
            )
            got = [
                (f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.proto)
                for f in anomaly.filters
            ]
            want = [
                (f.src_ip, f.src_port, f.dst_ip, f.dst_port, protocols[f.proto])
                for f in expected.filters
            ]
            if not is_xml:  # the CSV has no protocol column
                want = [(*w[:4], None) for w in want]
            assert got == want, (path.name, anomaly.anomaly_id)
            if is_xml and expected.start_ns is not None:
                assert anomaly.filters[0].t_from_s == pytest.approx(
                    expected.start_ns / 1e9, abs=1e-6
                )
                assert anomaly.filters[0].t_to_s == pytest.approx(
                    expected.end_ns / 1e9, abs=1e-6
                )
