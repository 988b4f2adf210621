"""The experiment scripts end to end on tiny budgets, and the store slicing the
ablations rely on.

Each script runs as its own process, as a user runs it, writing into a temporary
folder; the tests read back the report it wrote.
"""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import common  # noqa: E402  (experiments/common.py)

# A handful of real captures per (source, class), enough for a split by capture
# file with both classes on every side and two sources to hold out.
SOURCES = ("suricata-verify", "zeek-traces", "nDPI", "markofu-pcaps")
CLASSES = ("normal", "exploit", "other-attack", "scan")
PER_SOURCE_AND_CLASS = 3


def _run(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        [sys.executable, str(REPO / "experiments" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def small_corpus(shared_dir, tmp_path_factory) -> pathlib.Path:
    """A labels CSV naming a few real captures of the corpus, by absolute path."""
    corpus = shared_dir / "datasets" / "capture-corpus"
    with open(corpus / "labels.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    picked = []
    for source in SOURCES:
        for label in CLASSES:
            matching = [
                r for r in rows if r["source"] == source and r["class"] == label
            ]
            picked += matching[:PER_SOURCE_AND_CLASS]
    path = tmp_path_factory.mktemp("corpus") / "labels.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["capture", "class", "source", "source_label"])
        for r in picked:
            capture = os.path.normpath(corpus / r["capture"])
            writer.writerow([capture, r["class"], r["source"], r["source_label"]])
    return path


def test_sliced_wide_store_equals_a_store_cut_narrow(tmp_path):
    """The first P packets and B bytes of a wide store are a store cut at P x B."""
    from stfe_jax import configs
    from stfe_jax import store as store_lib
    from stfe_jax.synth import mawi_day

    day = mawi_day.generate_day(tmp_path / "day", seed=3, scale=0.05)
    flows = configs.get_config("cnn_lstm").flows
    flows.packets_per_flow, flows.bytes_per_packet = 16, 200
    wide = store_lib.build_store([str(day.capture_path)], tmp_path / "wide", flows)
    flows.packets_per_flow, flows.bytes_per_packet = 4, 32
    narrow = store_lib.build_store([str(day.capture_path)], tmp_path / "narrow", flows)

    names = ("packets", "packet_caplen", "direction", "iat_s", "n_packets")
    sliced = common.sliced_arrays(
        {name: np.asarray(wide.column(name)[:]) for name in names}, 4, 32
    )
    assert wide.num_flows == narrow.num_flows > 100
    for name in names:
        expected = np.asarray(narrow.column(name)[:])
        np.testing.assert_array_equal(sliced[name], expected, err_msg=name)
    # Some flows have more than 4 packets, so the cut does change them.
    assert (np.asarray(wide.column("n_packets")[:]) > 4).any()


def test_mean_std_leaves_out_undefined_values():
    summary = common.mean_std([0.5, None, float("nan"), 0.7])
    assert summary["n"] == 2
    assert summary["mean"] == pytest.approx(0.6)
    assert summary["std"] == pytest.approx(0.1)
    assert common.format_mean_std(summary) == "0.6000 ± 0.1000"
    assert common.mean_std([None])["mean"] is None


def test_compare_models_synthetic_two_seeds_and_cross_day(tmp_path):
    out = tmp_path / "out"
    _run(
        "compare_models.py",
        "--dataset=synthetic",
        "--tiny",
        "--seeds=2",
        "--cross_day_seeds=1",
        "--steps=8",
        "--models=mlp",
        "--synthetic_scale=0.1",
        "--feature_flows=300",
        f"--out={out}",
        f"--workdir={tmp_path / 'work'}",
    )
    report = json.loads((out / "report.json").read_text())
    assert report["finished"] is True
    assert "--dataset=synthetic" in report["provenance"]["command"]
    assert len(report["provenance"]["git_commit"]) == 40
    for part, seeds in (("synthetic", 2), ("synthetic_cross_day", 1)):
        summary = report[part]["summary"]
        assert set(summary) >= {
            "mlp",
            "mlp features + random forest",
            "flow statistics + random forest",
        }
        assert summary["mlp"]["runs"] == seeds
        assert len(report[part]["runs"]["mlp"]) == seeds
        assert 0.0 <= summary["mlp"]["accuracy"]["mean"] <= 1.0
        assert (out / f"{part}.png").stat().st_size > 1000
        assert (out / part / "comparison.md").exists()
    # The cross-day test set is the whole second day: more flows than the first
    # day's test split.
    cross = report["synthetic_cross_day"]["flows_per_split"]["0"]["test"]
    same = report["synthetic"]["flows_per_split"]["0"]["test"]
    assert sum(cross.values()) > sum(same.values())
    markdown = (out / "report.md").read_text()
    assert "SYNTHETIC" in markdown and "± " in markdown

    # A run of one more seed joins the first run: three runs a row, and the means
    # are those of the three seeds' figures.
    seed2 = tmp_path / "seed2"
    _run(
        "compare_models.py",
        "--dataset=synthetic",
        "--tiny",
        "--seed_list=2",
        "--parts=same_day",
        "--steps=8",
        "--models=mlp",
        "--synthetic_scale=0.1",
        "--feature_flows=300",
        f"--out={seed2}",
        f"--workdir={tmp_path / 'work2'}",
    )
    joined = tmp_path / "joined"
    _run("compare_models.py", f"--merge={out},{seed2}", f"--out={joined}")
    merged = json.loads((joined / "report.json").read_text())
    assert sorted(merged["synthetic"]["seeds"]) == [0, 1, 2]
    row = merged["synthetic"]["summary"]["mlp"]
    assert row["runs"] == 3
    second = json.loads((seed2 / "report.json").read_text())
    f1s = [r["f1"] for r in report["synthetic"]["runs"]["mlp"]]
    f1s += [r["f1"] for r in second["synthetic"]["runs"]["mlp"]]
    assert row["f1"]["mean"] == pytest.approx(np.mean(f1s))
    assert "synthetic_cross_day" in merged  # from the first run alone


def test_compare_models_corpus_binary_multiclass_and_leave_one_source_out(
    small_corpus, tmp_path
):
    out = tmp_path / "out"
    _run(
        "compare_models.py",
        "--dataset=corpus",
        f"--labels={small_corpus}",
        "--tiny",
        "--seeds=1",
        "--multiclass_seeds=1",
        "--min_test_captures=2",
        "--loso_sources=1",
        "--loso_models=mlp",
        "--steps=8",
        "--models=mlp",
        "--feature_flows=300",
        f"--out={out}",
        f"--workdir={tmp_path / 'work'}",
    )
    report = json.loads((out / "report.json").read_text())
    with open(small_corpus, newline="") as file:
        assert report["store"]["captures"] == len(list(csv.DictReader(file)))
    assert report["binary"]["summary"]["mlp"]["runs"] == 1
    counts = report["multiclass"]["test_captures_per_class"]["0"]
    assert set(counts) == {"normal", *CLASSES[1:]}
    scored = report["multiclass"]["per_seed"]["0"]["mlp"]["scored_classes"]
    assert scored == [c for c, n in counts.items() if n >= 2]
    loso = report["leave_one_source_out"]
    assert len(loso) == 1
    for held_out in loso.values():
        assert held_out["test_captures"] >= 1
        assert "mlp" in held_out["rows"]


def test_label_matching_on_the_cic_slice(shared_dir, tmp_path):
    out = tmp_path / "out"
    _run(
        "compare_models.py",
        "--dataset=cic",
        f"--out={out}",
        f"--workdir={tmp_path / 'work'}",
    )
    report = json.loads((out / "report.json").read_text())
    per_label = {p["label"]: p for p in report["per_label"]}
    # The slice's README: 4 BOT rows start inside the capture, none ANOMALY.
    assert per_label["BOT"]["rows_inside_span"] == 4
    assert per_label["ANOMALY"]["rows_inside_span"] == 0
    labelled = sum(p["flows_labelled"] for p in per_label.values())
    assert labelled == report["matching"]["flows_matched"]
    assert labelled + report["flows_unlabelled"] == report["flows"]


def test_ablations_tiny(small_corpus, tmp_path):
    out = tmp_path / "out"
    _run(
        "ablations.py",
        f"--labels={small_corpus}",
        "--tiny",
        "--steps=6",
        "--batch_size=16",
        "--ablations=masking,packets_per_flow",
        "--max_points=2",
        f"--out={out}",
        f"--workdir={tmp_path / 'work'}",
    )
    report = json.loads((out / "report.json").read_text())
    assert list(report["packets_per_flow"]["points"]) == ["1", "2"]
    assert list(report["masking"]["points"]) == ["default", "addresses and ports kept"]
    # The wide store, and one store per masking point.
    assert set(report["store_build_s"]) == {
        "wide",
        "store-default",
        "store-flows.mask_addresses_false-flows.mask_ports_false",
    }
    for name in ("packets_per_flow", "masking"):
        assert (out / f"{name}.png").stat().st_size > 1000
        for point in report[name]["points"].values():
            assert 0.0 <= point["accuracy"] <= 1.0


def test_benchmarks_gathers_printed_figures(shared_dir, tmp_path):
    out = tmp_path / "out"
    _run(
        "benchmarks.py",
        "--quick",
        "--scripts=bench_read",
        f"--out={out}",
    )
    report = json.loads((out / "report.json").read_text())
    assert report["missing"] == []
    run = report["runs"]["bench_read"]
    assert run["status"] == 0
    assert any("packets/s" in line for line in run["figures"])
    assert (out / "bench_read.txt").read_text().startswith("$ ")


def _refused(script: str, *args: str) -> str:
    """Runs a script that must refuse its request; returns what it printed."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "experiments" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    printed = completed.stdout + completed.stderr
    assert completed.returncode != 0, printed[-2000:]
    assert "Traceback" not in printed, printed[-3000:]
    return printed


def test_scripts_refuse_bad_requests_in_one_line(tmp_path):
    results = REPO / "experiments" / "results"
    out = f"--out={tmp_path / 'out'}"
    printed = _refused("compare_models.py", f"--merge={tmp_path / 'nowhere'}", out)
    assert "error: --merge" in printed and "no report.json" in printed
    corpus, synthetic = results / "compare_corpus", results / "compare_synthetic"
    printed = _refused("compare_models.py", f"--merge={corpus},{synthetic}", out)
    assert "different datasets" in printed
    printed = _refused("compare_models.py", f"--merge={corpus},{corpus}", out)
    assert "names a folder twice" in printed
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "report.json").write_text((corpus / "report.json").read_text())
    printed = _refused("compare_models.py", f"--merge={corpus},{copy}", out)
    assert "binary seed 0 is in both" in printed
    printed = _refused(
        "compare_models.py", "--dataset=synthetic", "--parts=binary", out
    )
    assert "names none of the synthetic parts" in printed
    printed = _refused("benchmarks.py", "--scripts=bench_bogus", out)
    assert "unknown ['bench_bogus']" in printed
    printed = _refused(
        "ablations.py", f"--labels={tmp_path / 'no.csv'}", f"--workdir={tmp_path}", out
    )
    assert "error: --labels" in printed
