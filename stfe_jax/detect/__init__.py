"""Detection: score captures or a live interface with a trained model, raise alerts.

detector = load_detector("runs/<time>-cnn_lstm")
with open("alerts.jsonl", "w") as stream:
    sink = AlertSink(detector, AlertWriter(stream))
    detect_captures(sink, ["trace.pcap"])
print(sink.summary.format_table())
"""

from stfe_jax.detect.alerts import AlertWriter, DetectSummary
from stfe_jax.detect.checkpoint import CheckpointError, Detector, load_detector
from stfe_jax.detect.offline import detect_captures
from stfe_jax.detect.sink import AlertSink
from stfe_jax.detect.tools import ToolMissingError

__all__ = [
    "AlertSink",
    "AlertWriter",
    "CheckpointError",
    "DetectSummary",
    "Detector",
    "ToolMissingError",
    "detect_captures",
    "load_detector",
]
