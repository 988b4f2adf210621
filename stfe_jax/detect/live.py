"""Live detection: dumpcap (or tshark) writes pcapng to a pipe that our reader reads.

The capture engine runs as a child process (``dumpcap -i NAME -w - -n -q [-f
FILTER]``); a reader thread turns its output into ``PacketBatch``es as bytes arrive;
the main thread assembles flows (``LiveFlowTable``) and scores each flow when it
ends (FIN/RST, timeout) or its sample fills (``packets_per_flow`` packets), so
alerts come out while traffic flows. Ctrl-C (SIGINT) stops the capture engine, the
packets already captured are read, the open flows are flushed and scored, and the
summary, with the packets the engine dropped, is printed.

pyshark's LiveCapture is not used for the packets: it decodes every packet through
tshark's JSON output, 1-2 thousand packets a second (see
``experiments/bench_detect.py`` for the loopback figures).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import queue
import re
import signal
import struct
import subprocess
import threading
import time
from typing import BinaryIO

from absl import logging

from stfe_jax.capture import CaptureFormatError, open_capture
from stfe_jax.detect import tools
from stfe_jax.detect.checkpoint import example_batch
from stfe_jax.detect.live_flows import LiveFlowTable
from stfe_jax.detect.sink import AlertSink

# Wall-clock seconds between idle-timeout sweeps while no packet arrives.
SWEEP_INTERVAL_S = 1.0
# Seconds the capture engine gets to stop and flush after SIGINT.
STOP_GRACE_S = 10.0
# Smallest scoring batch live (a few flows are not padded to a full batch).
LIVE_MIN_BATCH = 8

_DUMPCAP_DROPS = re.compile(
    r"received/dropped on interface '(?P<iface>[^']*)': (?P<received>\d+)/"
    r"(?P<dropped>\d+)(?: \(pcap:(?P<pcap>\d+)/dumpcap:(?P<dumpcap>\d+)/"
    r"flushed:(?P<flushed>\d+)/ps_ifdrop:(?P<ifdrop>\d+)\))?"
)
_TSHARK_DROPS = re.compile(r"(?P<dropped>\d+) packets? dropped")


def find_capture_tool() -> str:
    """dumpcap's path, else tshark's (both ship with Wireshark).

    Raises:
      ToolMissingError: neither is installed (says how to install them).
    """
    for name in ("dumpcap", "tshark"):
        try:
            return tools.require_tool(name, "live capture (--interface)")
        except tools.ToolMissingError:
            continue
    return tools.require_tool("dumpcap", "live capture (--interface)")


def _one_packet_pcapng() -> bytes:
    """A pcapng stream of one Ethernet/IPv4/UDP packet (to compile the reader)."""
    order = "<"

    def block(block_type: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        length = 12 + len(body)
        return (
            struct.pack(order + "II", block_type, length)
            + body
            + struct.pack(order + "I", length)
        )

    udp = struct.pack("!HHHH", 40000, 53, 8, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes(4), bytes(4))
    frame = bytes(12) + b"\x08\x00" + ip + udp
    section = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    interface = struct.pack(order + "HHI", 1, 0, 65535)
    packet = struct.pack(order + "IIIII", 0, 0, 0, len(frame), len(frame)) + frame
    return block(0x0A0D0D0A, section) + block(1, interface) + block(6, packet)


def warm_up_flow_assembly(flows_config) -> float:
    """Runs the reader and the flow table once on a one-packet stream, so that
    their compiled code is loaded before the capture starts (a first call that
    compiles would stall the pipe and make the engine drop packets); returns
    the seconds it took."""
    started = time.perf_counter()
    table = LiveFlowTable(flows_config)
    with open_capture(io.BufferedReader(io.BytesIO(_one_packet_pcapng()))) as capture:
        for batch in capture.batches():
            table.push(batch)
    table.take_full_samples()
    table.expire(time.time_ns())
    table.finish()
    return time.perf_counter() - started


def capture_command(tool: str, interface: str, capture_filter: str | None) -> list:
    """The command line that captures ``interface`` as pcapng to stdout."""
    command = [tool, "-i", interface, "-w", "-", "-q"]
    command += (
        ["-n"] if os.path.basename(tool).startswith("dumpcap") else ["-F", "pcapng"]
    )
    if capture_filter:
        command += ["-f", capture_filter]
    return command


@dataclasses.dataclass
class EngineStats:
    """What the capture engine said about its packets when it stopped."""

    received: int | None = None
    dropped: int | None = None
    detail: str = ""


def parse_engine_stats(stderr_text: str) -> EngineStats:
    """Packets received and dropped from dumpcap's (or tshark's) closing message."""
    stats = EngineStats()
    for match in _DUMPCAP_DROPS.finditer(stderr_text):
        stats.received = (stats.received or 0) + int(match["received"])
        stats.dropped = (stats.dropped or 0) + int(match["dropped"])
        stats.detail = match.group(0)
        if match["pcap"] is not None:
            # dumpcap counts its own and the kernel's drops apart from libpcap's.
            stats.dropped += int(match["dumpcap"]) + int(match["flushed"])
    if stats.dropped is None:
        match = _TSHARK_DROPS.search(stderr_text)
        if match:
            stats.dropped = int(match["dropped"])
            stats.detail = match.group(0)
    return stats


class _PipeStream:
    """The capture engine's output as the reader sees it: named after the
    interface, and optionally copied into a file as it is read."""

    def __init__(self, stream: BinaryIO, name: str, copy_to: BinaryIO | None):
        self._stream = stream
        self._copy = copy_to
        self.name = name

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if self._copy is not None:
            self._copy.write(data)
        return data

    def readinto1(self, view) -> int:
        n = self._stream.readinto1(view)
        if n and self._copy is not None:
            self._copy.write(bytes(view[:n]))
        return n


_END = object()


def _read_packets(stream, name: str, batches: queue.Queue, outcome: dict) -> None:
    """Reader thread: ``PacketBatch``es of the pipe onto ``batches``, then _END."""
    try:
        with open_capture(stream, batch_packets=4096) as capture:
            for batch in capture.batches():
                batches.put(batch)
            outcome["packets"] = capture.packets_read
            outcome["error"] = capture.error
            outcome["warnings"] = list(capture.warnings)
    except (CaptureFormatError, OSError) as err:
        outcome["error"] = str(err)
    finally:
        batches.put(_END)


def detect_live(
    sink: AlertSink,
    interface: str,
    *,
    capture_filter: str | None = None,
    save_to: str | pathlib.Path | None = None,
    stop: threading.Event | None = None,
    started: threading.Event | None = None,
    max_seconds: float | None = None,
) -> dict:
    """Captures ``interface`` and scores its flows into ``sink`` until stopped.

    Stops on SIGINT (Ctrl-C; installed only when called from the main thread), when
    ``stop`` is set, after ``max_seconds`` of wall time, or when the capture
    engine exits. Then the open flows are flushed and scored.

    Args:
      sink: where scored flows go (``summary`` counts them under
        ``live:<interface>``).
      interface: the interface name (``lo``, ``eth0``, ...).
      capture_filter: a capture filter in BPF syntax (``tcp portrange 1-1024``).
      save_to: also write the captured pcapng here (for ``--explain``).
      stop: an event that stops the capture when set.
      started: set once the capture engine is running.
      max_seconds: stop after this many seconds.

    Returns:
      A dict: ``packets`` read, ``engine`` (``received``/``dropped`` as the engine
      reported them), ``stop_reason``, ``error``.

    Raises:
      ToolMissingError: no dumpcap/tshark.
      RuntimeError: the capture engine could not start (its message, e.g. no
        permission to capture on the interface).
    """
    tool = find_capture_tool()
    flows_config = sink.detector.flows_config
    sink.summary.compile_seconds = sink.scorer.warm_up(example_batch(flows_config))
    logging.info(
        "Model compiled for batch sizes %s in %.1f s",
        sink.scorer.batch_sizes,
        sink.summary.compile_seconds,
    )
    logging.info(
        "Reader and flow table ready in %.1f s", warm_up_flow_assembly(flows_config)
    )
    command = capture_command(tool, interface, capture_filter)
    name = f"live:{interface}"
    counts = sink.summary.capture(name)
    logging.info("Starting %s", " ".join(command))
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    stderr_lines: list[str] = []
    engine_ready = threading.Event()

    def collect_stderr():
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            stderr_lines.append(line)
            if line.startswith("Capturing on") or "File:" in line:
                engine_ready.set()
            logging.info("%s: %s", os.path.basename(tool), line)

    stderr_thread = threading.Thread(target=collect_stderr, daemon=True)
    stderr_thread.start()

    copy_file = open(save_to, "wb") if save_to else None  # noqa: SIM115
    stream = _PipeStream(process.stdout, name, copy_file)
    batches: queue.Queue = queue.Queue(maxsize=256)
    outcome: dict = {"packets": 0, "error": None, "warnings": []}
    reader = threading.Thread(
        target=_read_packets, args=(stream, name, batches, outcome), daemon=True
    )
    reader.start()

    stop = stop or threading.Event()
    interrupts = []

    def on_sigint(signum, frame):
        interrupts.append(time.monotonic())
        if len(interrupts) > 1:
            raise KeyboardInterrupt
        logging.info("Interrupted: stopping the capture and flushing open flows")
        stop.set()

    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGINT, on_sigint)

    table = LiveFlowTable(flows_config)
    began = time.monotonic()
    last_sweep = began
    stop_reason = "capture engine exited"
    reader_done = False
    try:
        while True:
            if started is not None and not started.is_set() and engine_ready.is_set():
                started.set()
            if stop.is_set():
                stop_reason = "interrupted" if interrupts else "stopped"
                break
            if max_seconds is not None and time.monotonic() - began > max_seconds:
                stop_reason = f"ran {max_seconds:g} s"
                break
            try:
                item = batches.get(timeout=0.2)
            except queue.Empty:
                item = None
            if item is _END:
                reader_done = True
                break
            if item is not None:
                _score_flows(sink, table, table.push(item), name, "flow_end")
                _score_flows(
                    sink, table, table.take_full_samples(), name, "sample_full"
                )
            now = time.monotonic()
            if now - last_sweep >= SWEEP_INTERVAL_S:
                last_sweep = now
                _score_flows(sink, table, table.expire(time.time_ns()), name, "timeout")
    finally:
        _stop_engine(process)
        while not reader_done:
            try:
                item = batches.get(timeout=STOP_GRACE_S)
            except queue.Empty:
                logging.error("the packet reader did not finish; open flows flushed")
                break
            if item is _END:
                break
            _score_flows(sink, table, table.push(item), name, "flow_end")
            _score_flows(sink, table, table.take_full_samples(), name, "sample_full")
        _score_flows(sink, table, table.finish(), name, "capture_stopped")
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        stderr_thread.join(timeout=2.0)
        if copy_file is not None:
            copy_file.close()
        sink.summary.seconds += time.monotonic() - began

    engine = parse_engine_stats("\n".join(stderr_lines))
    counts.packets = table.stats.packets_seen
    counts.warnings = list(outcome["warnings"])
    sink.summary.packets_dropped = engine.dropped
    if engine.detail:
        sink.summary.notes.append(f"capture engine: {engine.detail}")
    engine_message = "; ".join(line for line in stderr_lines if line.strip())
    engine_failed = stop_reason == "capture engine exited" and process.returncode
    if engine_failed and table.stats.packets_seen == 0:
        raise RuntimeError(
            f"{os.path.basename(tool)} could not capture on {interface!r} (exit "
            f"status {process.returncode}): {engine_message or 'no message'}"
        )
    if engine_failed:
        sink.summary.notes.append(
            f"the capture engine stopped by itself (exit status "
            f"{process.returncode}): {engine_message}"
        )
    if outcome["error"]:
        counts.error = (
            f"the capture stream broke off: {outcome['error']}; alerts cover the "
            f"{table.stats.packets_seen} packets read before it"
        )
    logging.info(
        "Live capture on %s stopped (%s): %d packets, %d flows scored, %d alerts, "
        "%s packets dropped by the capture engine",
        interface,
        stop_reason,
        counts.packets,
        counts.flows,
        counts.alerts,
        "unknown" if engine.dropped is None else engine.dropped,
    )
    return {
        "packets": counts.packets,
        "engine": dataclasses.asdict(engine),
        "stop_reason": stop_reason,
        "error": outcome["error"],
    }


def _score_flows(sink, table: LiveFlowTable, flows, name: str, reason: str) -> None:
    if reason != "sample_full":
        flows = table.drop_already_scored(flows)
    if flows is not None and len(flows):
        sink.add(flows, name, scored_at=reason)


def _stop_engine(process: subprocess.Popen) -> None:
    """SIGINT to the capture engine (it flushes and prints its statistics), then
    SIGKILL if it has not exited within ``STOP_GRACE_S``."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logging.error("capture engine did not stop on SIGINT; killing it")
            process.kill()
            process.wait()
