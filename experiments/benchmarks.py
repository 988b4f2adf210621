"""All benchmarks under one command: runs each bench script, gathers its figures.

Each of ``bench_read.py``, ``bench_preprocess.py``, ``bench_train.py``,
``bench_detect.py`` and ``bench_distributed.py`` that exists runs as its own
process (so that one's JIT caches and memory do not touch another's), with a
time limit. Their printed lines that carry a rate (``/s``) or a ratio (``x``)
form one table; the whole output of each is kept beside the report.

  python experiments/benchmarks.py                 # this machine, CPU
  python experiments/benchmarks.py --device=gpu    # bench_train.py alone, on GPU
  python experiments/benchmarks.py --quick         # small inputs (tests)
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import time

from absl import app, flags, logging

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # common.py, then stfe_jax

import common  # noqa: E402

FLAGS = flags.FLAGS
SCRIPTS = (
    "bench_read",
    "bench_preprocess",
    "bench_train",
    "bench_detect",
    "bench_distributed",
)
flags.DEFINE_list("scripts", list(SCRIPTS), "Benchmarks to run (those that exist).")
flags.DEFINE_enum(
    "device", "cpu", ["cpu", "gpu"], "Passed to bench_train.py as --device."
)
flags.DEFINE_bool("quick", False, "Small inputs: a smoke run, not a measurement.")
flags.DEFINE_integer("timeout_s", 1200, "Time limit of each benchmark, seconds.")
flags.DEFINE_multi_string(
    "pass", [], "SCRIPT:--flag=value passed to one benchmark (repeatable)."
)
flags.DEFINE_string("out", None, "Result folder (default experiments/results/...).")

# Arguments of a quick run: inputs small enough for a test, per script.
QUICK_ARGS = {
    "bench_read": ["--min_packets=20000", "--pyshark_packets=200", "--our_runs=1"],
    "bench_preprocess": [
        "--min_packets=20000",
        "--long_factor=2",
        "--batch_steps=5",
        "--batch_size=64",
    ],
    "bench_distributed": ["--packets=20000"],
    "bench_detect": ["--scale=0.05", "--models=mlp", "--baseline_flows=20"],
}
# A figure: a number with a rate or ratio unit on the same line.
FIGURE = re.compile(
    r"(\d[\d,.]*\s*(?:[kKMG]?\s*(?:packets|samples|flows|steps|pkt|examples|bytes|"
    r"MiB|MB|GB)(?:/CPU s)?/s|x\b))|ratio|speed|throughput",
    re.IGNORECASE,
)


def command_of(script: str, out_dir: pathlib.Path) -> list[str]:
    """The command line that runs one benchmark."""
    args = [sys.executable, str(HERE / f"{script}.py")]
    if script == "bench_detect":
        args.append(f"--out={out_dir / 'bench_detect.json'}")
    if FLAGS.quick:
        args += QUICK_ARGS.get(script, [])
    if script == "bench_train":
        args.append(f"--device={FLAGS.device}")
    for item in FLAGS["pass"].value:
        name, _, flag = item.partition(":")
        if name == script:
            args.append(flag)
    return args


def figure_lines(stdout: str) -> list[str]:
    """The printed lines that hold a rate or a ratio (log lines left out)."""
    lines = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line or re.match(r"^[IWEF]\d{4} ", line):
            continue
        if FIGURE.search(line):
            lines.append(line)
    return lines


def run_one(script: str, out_dir: pathlib.Path) -> dict:
    """Runs one benchmark; returns its exit status, seconds and figure lines."""
    command = command_of(script, out_dir)
    logging.info("running %s", " ".join(command))
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            command,
            cwd=common.REPOSITORY,
            capture_output=True,
            text=True,
            timeout=FLAGS.timeout_s,
            check=False,
        )
        stdout, stderr, status = (
            completed.stdout,
            completed.stderr,
            completed.returncode,
        )
    except subprocess.TimeoutExpired as expired:
        stdout = (expired.stdout or b"").decode(errors="replace")
        stderr = (expired.stderr or b"").decode(errors="replace")
        status = f"timed out after {FLAGS.timeout_s} s"
    seconds = time.perf_counter() - started
    (out_dir / f"{script}.txt").write_text(
        f"$ {' '.join(command[1:])}\n# exit status: {status}\n\n{stdout}\n"
        f"# stderr (last 4000 characters)\n{stderr[-4000:]}\n"
    )
    figures = figure_lines(stdout)
    logging.info(
        "%s: status %s in %.0f s, %d figure lines",
        script,
        status,
        seconds,
        len(figures),
    )
    return {
        "command": "python "
        + " ".join(
            str(pathlib.Path(a).relative_to(common.REPOSITORY))
            if a.startswith(str(common.REPOSITORY))
            else a
            for a in command[1:]
        ),
        "status": status,
        "seconds": seconds,
        "figures": figures,
        "output": f"{script}.txt",
    }


def main(argv):
    del argv
    name = "benchmarks_gpu" if FLAGS.device == "gpu" else "benchmarks"
    out = pathlib.Path(FLAGS.out) if FLAGS.out else common.RESULTS / name
    report_doc = common.Report(out, "Benchmarks gathered (this machine)", sys.argv)
    if FLAGS.quick:
        report_doc.add("QUICK run: small inputs, a smoke test, not a measurement.\n")
    scripts = list(FLAGS.scripts)
    unknown = [s for s in scripts if s not in SCRIPTS]
    if unknown:
        raise app.UsageError(f"--scripts: unknown {unknown}; known: {list(SCRIPTS)}")
    if FLAGS.device == "gpu" and not FLAGS["scripts"].present:
        scripts = ["bench_train"]  # the GPU run: training only, unattended
    missing = [s for s in scripts if not (HERE / f"{s}.py").exists()]
    runs = {}
    for script in scripts:
        if script in missing:
            continue
        runs[script] = run_one(script, out)
        report_doc.data["runs"] = runs
        report_doc.write()
    rows = []
    for script, run in runs.items():
        figures = run["figures"] or ["(no rate or ratio printed)"]
        for k, line in enumerate(figures):
            rows.append(
                [
                    script if k == 0 else "",
                    str(run["status"]) if k == 0 else "",
                    f"{run['seconds']:.0f}" if k == 0 else "",
                    line.replace("|", "/"),
                ]
            )
    report_doc.add(
        "\n".join(
            [
                "Each benchmark ran as its own process, one after another; the "
                "figures are the lines it printed with a rate or a ratio (each "
                "compares against its own baseline, named in the line). Full "
                "output: `<script>.txt` here.",
                "",
                common.markdown_table(["benchmark", "exit", "wall s", "figure"], rows),
                "",
                "Commands:",
                "",
                *(f"- `{run['command']}`" for run in runs.values()),
                "",
                (
                    f"Not present, not run: {', '.join(missing)}."
                    if missing
                    else "Every benchmark script was present."
                ),
                "",
            ]
        )
    )
    report_doc.data["missing"] = missing
    report_doc.write(finished=True)
    failed = [s for s, r in runs.items() if r["status"] != 0]
    if failed:
        logging.warning("benchmarks that did not finish cleanly: %s", failed)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(common.reporting_user_errors(main))
