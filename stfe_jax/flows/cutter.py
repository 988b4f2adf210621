"""Cutting a stream of packet batches into flows and their sample tensors.

``cut_flows`` keeps the state of open flows only (at most ``packets_per_flow``
packets of bytes each), carries it from one ``PacketBatch`` to the next, and yields a
``FlowBatch`` of the flows that ended in each batch; the per-packet work runs in the
compiled kernel of ``stfe_jax.flows.kernel``. Flow rules:

- Key: protocol and the two (address, port) ends in canonical order, so both
  directions share a flow; the initiator is the source of the flow's first packet and
  every packet gets a direction bit (0 from the initiator). Protocols without ports
  (ICMP, ...) are keyed by addresses and protocol. The VLAN id joins the key only
  with ``vlan_in_key`` (a VLAN tagged on one side only would otherwise split flows).
- A flow ends when a gap between its packets exceeds ``idle_timeout_s``, when it has
  lasted ``active_timeout_s``, on a TCP RST, or after FINs from both sides (the final
  ACK, within ``CLOSE_WAIT_S``, still belongs to it); the rest end with the capture.
- A non-first IP fragment (IPv4 or IPv6) has no transport header: it joins the flow
  of its datagram's first fragment, found by (source, destination, protocol, IP id),
  when that was seen at most ``FRAGMENT_TIMEOUT_S`` earlier; otherwise it is counted
  as dropped, never keyed without its ports.
- An ICMP or ICMPv6 error (unreachable, time exceeded, ...) joins the open flow of
  the packet it quotes (found from the quoted header's addresses, protocol and
  ports), as a packet towards that packet's source; when that flow is not open it
  forms an ICMP flow keyed by its own addresses.
- Packets without an IP header are counted and skipped.
- Time is the capture's packet clock. Gaps are measured between a flow's own
  packets; besides, once per capture second of progress, flows whose timeouts the
  latest timestamp seen has passed are swept out, which bounds memory. With
  timestamps in order the flows do not depend on where batches or sweeps fall;
  when a capture's timestamps jump backwards they can.

TODO: tunnels (GRE, IP in IP, Teredo) are keyed by their outer header only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from absl import logging

from stfe_jax.capture.columns import PacketBatch
from stfe_jax.flows import kernel
from stfe_jax.flows.columns import FlowBatch
from stfe_jax.flows.options import CLOSE_WAIT_S, FRAGMENT_TIMEOUT_S, FlowOptions

_INITIAL_SLOTS = 1024
_FRAGMENT_TABLE_SIZE = 1 << 16
_NS_PER_S = 1_000_000_000
_PROGRESS_EVERY_S = 30.0


@dataclasses.dataclass
class FlowStats:
    """Counts from cutting one capture into flows.

    Attributes:
      packets_seen: packets handed to the cutter.
      non_ip_skipped: packets without an IP header (skipped).
      fragments_joined: non-first IP fragments that joined their datagram's flow.
      fragments_dropped: non-first IP fragments whose first fragment was not seen.
      flows_by_end_reason: flows ended, by reason (idle_timeout, active_timeout,
        fin, rst, end_of_capture).
      max_open_flows: the most flows open at once (the memory high-water mark).
      icmp_errors_attached: ICMP errors that joined the flow of the packet they
        quote.
    """

    packets_seen: int = 0
    non_ip_skipped: int = 0
    fragments_joined: int = 0
    fragments_dropped: int = 0
    flows_by_end_reason: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(kernel.REASON_NAMES.values(), 0)
    )
    max_open_flows: int = 0
    icmp_errors_attached: int = 0

    @property
    def flows(self) -> int:
        """Flows ended so far, all reasons together."""
        return sum(self.flows_by_end_reason.values())

    def to_dict(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["flows"] = self.flows
        return out


class FlowTable:
    """Open flows of one capture and the kernel calls that advance them.

    Feed it ``PacketBatch``es with ``push`` (in capture order) and end it with
    ``finish``; each returns a ``FlowBatch`` of the flows that ended.
    """

    def __init__(self, flows_config: Any, *, capture_index: int = 0):
        self.options = FlowOptions.from_config(flows_config)
        self.capture_index = int(capture_index)
        self.stats = FlowStats()
        opts = self.options
        self._params = np.zeros(kernel.NUM_PARAMS, dtype=np.int64)
        self._params[kernel.P_IDLE_NS] = round(opts.idle_timeout_s * _NS_PER_S)
        self._params[kernel.P_ACTIVE_NS] = round(opts.active_timeout_s * _NS_PER_S)
        self._params[kernel.P_CLOSE_WAIT_NS] = round(CLOSE_WAIT_S * _NS_PER_S)
        self._params[kernel.P_FRAG_TIMEOUT_NS] = round(FRAGMENT_TIMEOUT_S * _NS_PER_S)
        self._params[kernel.P_VLAN_IN_KEY] = int(opts.vlan_in_key)
        self._params[kernel.P_MASK_BITS] = opts.mask_bits
        self._counters = np.zeros(kernel.NUM_COUNTERS, dtype=np.int64)
        self._counters[kernel.C_NOW] = np.iinfo(np.int64).min
        self._frag_key = np.zeros((_FRAGMENT_TABLE_SIZE, 5), dtype=np.uint64)
        self._frag_val = np.zeros((_FRAGMENT_TABLE_SIZE, 2), dtype=np.int64)
        self._capacity = 0
        self._ended = np.zeros(0, dtype=np.int64)
        self._grow(_INITIAL_SLOTS)
        self._last_sweep_ns = np.iinfo(np.int64).min

    @property
    def open_flows(self) -> int:
        """Flows open now."""
        return int(self._counters[kernel.C_TABLE_USED])

    def _grow(self, capacity: int) -> None:
        """Make room for ``capacity`` flow slots, keeping the flows that are open."""
        old = self._capacity
        p, b = self.options.packets_per_flow, self.options.bytes_per_packet

        def grown(array, shape, dtype):
            new = np.zeros((capacity, *shape), dtype=dtype)
            if old:
                new[:old] = array
            return new

        self._s_key = grown(getattr(self, "_s_key", None), (5,), np.uint64)
        self._s_i64 = grown(getattr(self, "_s_i64", None), (kernel.NUM_I64,), np.int64)
        self._s_u8 = grown(getattr(self, "_s_u8", None), (kernel.NUM_U8,), np.uint8)
        self._s_addr = grown(getattr(self, "_s_addr", None), (32,), np.uint8)
        self._s_port = grown(getattr(self, "_s_port", None), (2,), np.uint16)
        self._s_bytes = grown(getattr(self, "_s_bytes", None), (p, b), np.uint8)
        self._s_caplen = grown(getattr(self, "_s_caplen", None), (p,), np.uint16)
        self._s_dir = grown(getattr(self, "_s_dir", None), (p,), np.uint8)
        self._s_iat = grown(getattr(self, "_s_iat", None), (p,), np.float32)

        # Free stack (popped from the top): the new slots go on top, lowest last so
        # that it is handed out first.
        free = np.zeros(capacity, dtype=np.int64)
        top = int(self._counters[kernel.C_FREE_TOP])
        if old:
            free[:top] = self._free[:top]
        new_slots = np.arange(capacity - 1, old - 1, -1, dtype=np.int64)
        free[top : top + new_slots.size] = new_slots
        self._free = free
        self._counters[kernel.C_FREE_TOP] = top + new_slots.size
        self._capacity = capacity

        self._table = np.full(4 * capacity, kernel.EMPTY, dtype=np.int64)
        kernel.rebuild_table(
            self._table, self._s_key, self._s_i64, self._s_u8, self._counters
        )

    def _take_ended(self) -> FlowBatch | None:
        """Copy the ended flows out of their slots and release the slots."""
        count = int(self._counters[kernel.C_ENDED])
        if count == 0:
            return None
        slots = self._ended[:count].copy()
        self._counters[kernel.C_ENDED] = 0
        flows = self._gather(slots)

        reasons = np.bincount(self._s_u8[slots, kernel.U_REASON], minlength=8)
        for code, name in kernel.REASON_NAMES.items():
            self.stats.flows_by_end_reason[name] += int(reasons[code])
        self._s_u8[slots, kernel.U_LIVE] = 0
        self._s_u8[slots, kernel.U_REASON] = 0
        top = int(self._counters[kernel.C_FREE_TOP])
        self._free[top : top + count] = slots[::-1]
        self._counters[kernel.C_FREE_TOP] = top + count
        return flows

    def _gather(self, slots: np.ndarray) -> FlowBatch:
        """A FlowBatch of the flows in ``slots``, in that order."""
        i64 = self._s_i64[slots]
        addr = self._s_addr[slots]
        port = self._s_port[slots]
        u8 = self._s_u8[slots]
        n_packets = i64[:, kernel.S_NSAMPLE].astype(np.int32)
        packets = self._s_bytes[slots]
        packet_caplen = self._s_caplen[slots]
        direction = self._s_dir[slots]
        iat_s = self._s_iat[slots]
        # A reused slot still holds the rows of its earlier flow past n_packets.
        absent = np.arange(self.options.packets_per_flow) >= n_packets[:, None]
        for array in (packets, packet_caplen, direction, iat_s):
            array[absent] = 0
        return FlowBatch(
            packets=packets,
            packet_caplen=packet_caplen,
            direction=direction,
            iat_s=iat_s,
            n_packets=n_packets,
            start_ns=i64[:, kernel.S_START].copy(),
            end_ns=i64[:, kernel.S_LAST].copy(),
            protocol=u8[:, kernel.U_PROTO].copy(),
            src_addr=np.ascontiguousarray(addr[:, :16]),
            dst_addr=np.ascontiguousarray(addr[:, 16:]),
            src_port=port[:, 0].copy(),
            dst_port=port[:, 1].copy(),
            ip_version=u8[:, kernel.U_IPVER].copy(),
            packet_count=i64[:, kernel.S_PACKETS].copy(),
            byte_count=i64[:, kernel.S_BYTES].copy(),
            fwd_packet_count=i64[:, kernel.S_FWD].copy(),
            tcp_flags_seen=u8[:, kernel.U_FLAGS].copy(),
            capture_index=np.full(len(slots), self.capture_index, dtype=np.int32),
        )

    def push(self, batch: PacketBatch) -> FlowBatch | None:
        """Add a batch of packets (capture order); returns the flows that ended."""
        n = len(batch)
        self._reserve_ended(2 * n + 2 + self._capacity)
        parts = []
        columns = _kernel_columns(batch)
        start = 0
        while start < n:
            start = kernel.process_packets(
                start,
                *columns,
                self._table,
                self._free,
                self._s_key,
                self._s_i64,
                self._s_u8,
                self._s_addr,
                self._s_port,
                self._s_bytes,
                self._s_caplen,
                self._s_dir,
                self._s_iat,
                self._frag_key,
                self._frag_val,
                self._params,
                self._counters,
                self._ended,
            )
            ended = self._take_ended()
            if ended is not None:
                parts.append(ended)
            if start < n and self._counters[kernel.C_FREE_TOP] == 0:
                self._grow(2 * self._capacity)
                self._reserve_ended(2 * n + 2 + self._capacity)

        # Sweep out flows that can take no more packets, at most once a capture second.
        now = int(self._counters[kernel.C_NOW])
        if now - self._last_sweep_ns >= _NS_PER_S:
            self._last_sweep_ns = now
            kernel.expire_flows(
                now,
                self._table,
                self._s_i64,
                self._s_u8,
                self._params,
                self._counters,
                self._ended,
            )
            ended = self._take_ended()
            if ended is not None:
                parts.append(ended)
        self._update_packet_stats()
        return _concat(parts)

    def finish(self) -> FlowBatch | None:
        """End every open flow (the capture is over); returns them by start time."""
        self._reserve_ended(self._capacity + 1)
        kernel.end_all_flows(
            self._table, self._s_i64, self._s_u8, self._counters, self._ended
        )
        count = int(self._counters[kernel.C_ENDED])
        order = np.argsort(
            self._s_i64[self._ended[:count], kernel.S_START], kind="stable"
        )
        self._ended[:count] = self._ended[:count][order]
        self._update_packet_stats()
        return self._take_ended()

    def _reserve_ended(self, size: int) -> None:
        """Make the ended-slot buffer hold at least ``size`` slots (kept between
        batches, so that steady streaming allocates nothing here). Call it only
        while the buffer holds no ended slots."""
        if self._ended.size < size:
            self._ended = np.zeros(size, dtype=np.int64)

    def _update_packet_stats(self) -> None:
        c = self._counters
        self.stats.packets_seen = int(c[kernel.C_PACKETS])
        self.stats.non_ip_skipped = int(c[kernel.C_NON_IP])
        self.stats.fragments_joined = int(c[kernel.C_FRAG_JOINED])
        self.stats.fragments_dropped = int(c[kernel.C_FRAG_DROPPED])
        self.stats.max_open_flows = int(c[kernel.C_MAX_OPEN])
        self.stats.icmp_errors_attached = int(c[kernel.C_ICMP_ATTACHED])


class FlowStream(Iterator[FlowBatch]):
    """Iterator of the ``FlowBatch``es of one capture; ``stats`` fills as it runs."""

    def __init__(self, batches: Iterable[PacketBatch], table: FlowTable):
        self._batches = iter(batches)
        self._table = table
        self._done = False
        self._started = time.monotonic()
        self._last_progress = self._started

    @property
    def stats(self) -> FlowStats:
        """Counts so far (final once the iterator is exhausted)."""
        return self._table.stats

    def __iter__(self) -> FlowStream:
        return self

    def __next__(self) -> FlowBatch:
        while not self._done:
            batch = next(self._batches, None)
            if batch is None:
                self._done = True
                flows = self._table.finish()
                self._log_summary()
            else:
                flows = self._table.push(batch)
                self._log_progress()
            if flows is not None and len(flows):
                return flows
        raise StopIteration

    def _log_progress(self) -> None:
        """A progress line every ``_PROGRESS_EVERY_S`` seconds of a long capture."""
        now = time.monotonic()
        if now - self._last_progress < _PROGRESS_EVERY_S:
            return
        self._last_progress = now
        stats = self._table.stats
        logging.info(
            "capture %d: %d packets, %d flows ended, %d open (%.0f packets/s)",
            self._table.capture_index,
            stats.packets_seen,
            stats.flows,
            self._table.open_flows,
            stats.packets_seen / max(now - self._started, 1e-9),
        )

    def _log_summary(self) -> None:
        stats = self._table.stats
        seconds = max(time.monotonic() - self._started, 1e-9)
        logging.info(
            "capture %d: %d packets cut into %d flows in %.1f s (%.0f packets/s); "
            "%d non-IP skipped, fragments %d joined %d dropped; ends %s; "
            "at most %d flows open",
            self._table.capture_index,
            stats.packets_seen,
            stats.flows,
            seconds,
            stats.packets_seen / seconds,
            stats.non_ip_skipped,
            stats.fragments_joined,
            stats.fragments_dropped,
            stats.flows_by_end_reason,
            stats.max_open_flows,
        )


def cut_flows(
    batches: Iterable[PacketBatch], flows_config: Any, *, capture_index: int = 0
) -> FlowStream:
    """Cut the packets of one capture into flows and their sample tensors.

    Args:
      batches: the capture's ``PacketBatch``es in capture order (timestamps in ns).
      flows_config: the ``flows`` config section (see ``FlowOptions``).
      capture_index: written to every flow's ``capture_index``.

    Returns:
      An iterator of ``FlowBatch``es, each the flows that ended while a batch was
      read (the last one: those still open at the end of the capture, by start
      time). Its ``stats`` attribute holds the packet, fragment and flow counts.
    """
    return FlowStream(batches, FlowTable(flows_config, capture_index=capture_index))


def _kernel_columns(batch: PacketBatch) -> tuple[np.ndarray, ...]:
    """The batch's columns the kernel reads, in its argument order and dtypes."""

    def col(name, dtype):
        return np.ascontiguousarray(getattr(batch, name), dtype=dtype)

    return (
        col("ts_ns", np.int64),
        col("caplen", np.uint32),
        col("wirelen", np.uint32),
        col("vlan_id", np.uint16),
        col("net_offset", np.int32),
        col("ip_version", np.uint8),
        col("src_addr", np.uint8),
        col("dst_addr", np.uint8),
        col("protocol", np.uint8),
        col("l4_offset", np.int32),
        col("src_port", np.uint16),
        col("dst_port", np.uint16),
        col("tcp_flags", np.uint8),
        col("ip_id", np.uint32),
        col("frag_offset", np.uint32),
        col("is_fragment", np.bool_),
        col("data_start", np.int64),
        col("data", np.uint8),
    )


def _concat(parts: list[FlowBatch]) -> FlowBatch | None:
    """One FlowBatch of several, in order (None when there are none)."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return FlowBatch(
        **{
            field.name: np.concatenate([getattr(p, field.name) for p in parts])
            for field in dataclasses.fields(FlowBatch)
        }
    )
