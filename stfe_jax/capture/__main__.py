"""``python -m stfe_jax.capture FILE...``: one JSON line of decoded counts per file.

Exit status 0 when every file was read cleanly, 1 when any had an error.
"""

from __future__ import annotations

import json
import sys

from absl import app, logging

from stfe_jax.capture.summary import summarize_capture


def main(argv: list[str]) -> int:
    paths = argv[1:]
    if not paths:
        print("usage: python -m stfe_jax.capture FILE...", file=sys.stderr)
        return 2
    any_error = False
    for path in paths:
        summary = summarize_capture(path)
        any_error = any_error or summary["error"] is not None
        print(json.dumps(summary), flush=True)
    return 1 if any_error else 0


def run() -> None:
    """Entry point: parses absl flags, then summarizes every file named."""
    logging.set_verbosity(logging.WARNING)
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
