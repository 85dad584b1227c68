"""One clock for load generators on several machines: each node's time.monotonic offset from the driver's.

NTP's rule: a round trip asker -> answerer -> asker gives (t1 sent, t2 answered, t3 received); if the two legs
took equally long the answerer's clock read t2 at the asker's (t1 + t3) / 2, and whatever the legs took, the
error of that guess is at most (t3 - t1) / 2. Of many round trips the one with the shortest RTT gives the
tightest bound, so it is the one kept.

The node asks the driver over UDP (a tiny time server on a driver thread: ~70 us round trips on one host, so
about +-35 us); where no UDP answer comes back (a firewall, a driver behind NAT) the driver asks the node through
Ray actor calls instead (~0.5 ms round trips: +-0.25 ms). `offset_s` is always node clock minus driver clock: a
driver time T is the node's T + offset_s.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

SAMPLES = 32
GAP_S = 0.002  # between round trips: samples spread over ~0.1 s, so one descheduled moment spoils only a few
UDP_TIMEOUT_S = 0.25
_PACKET = struct.Struct("!d")  # the asker's t1, echoed back with the driver's t2 appended
_REPLY = struct.Struct("!dd")


@dataclass(slots=True)
class ClockOffset:
    offset_s: float  # node clock - driver clock
    uncertainty_s: float  # the true offset lies within offset_s +- this (half the best sample's round trip)
    rtt_s: float
    samples: int
    method: str  # udp | ray

    def to_json(self) -> dict:
        return asdict(self)


def best_sample(samples: list[tuple[float, float, float]], asker_is_node: bool, method: str) -> ClockOffset:
    """The offset from the minimum-RTT round trip of (t1, t2, t3) samples, t1 and t3 on the asker's clock."""
    if not samples:
        raise ValueError("no clock samples")
    t1, t2, t3 = min(samples, key=lambda s: s[2] - s[0])
    midpoint = (t1 + t3) / 2
    offset = midpoint - t2 if asker_is_node else t2 - midpoint
    return ClockOffset(offset_s=offset, uncertainty_s=(t3 - t1) / 2, rtt_s=t3 - t1, samples=len(samples), method=method)


class TimeServer:
    """The driver's side of the UDP exchange: every datagram is answered at once with the driver's monotonic
    time. One thread; closed with close()."""

    def __init__(self, host: str = "0.0.0.0"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="clock-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                data, peer = self.sock.recvfrom(64)
            except OSError:  # closed
                return
            t2 = time.monotonic()
            if len(data) == _PACKET.size:
                try:
                    self.sock.sendto(data + _PACKET.pack(t2), peer)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self._thread.join(timeout=1.0)


def measure_udp(host: str, port: int, samples: int = SAMPLES, timeout_s: float = UDP_TIMEOUT_S) -> ClockOffset | None:
    """The node's side: round trips to the driver's TimeServer; None when fewer than half come back."""
    got: list[tuple[float, float, float]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        for _ in range(samples):
            t1 = time.monotonic()
            try:
                sock.sendto(_PACKET.pack(t1), (host, port))
                while True:  # a late answer to an earlier round trip is not this one's
                    data = sock.recv(64)
                    t3 = time.monotonic()
                    if len(data) == _REPLY.size and _REPLY.unpack(data)[0] == t1:
                        got.append((t1, _REPLY.unpack(data)[1], t3))
                        break
            except OSError:  # timeout, unreachable
                pass
            time.sleep(GAP_S)
    return best_sample(got, asker_is_node=True, method="udp") if len(got) * 2 >= samples else None


def measure_by_call(node_now: Callable[[], float], samples: int = SAMPLES) -> ClockOffset:
    """The driver's side of the fallback: `node_now()` is a blocking call that returns the node's clock."""
    got = []
    for _ in range(samples):
        t1 = time.monotonic()
        t2 = node_now()
        got.append((t1, t2, time.monotonic()))
        time.sleep(GAP_S)
    return best_sample(got, asker_is_node=False, method="ray")


def error_bound_s(start: ClockOffset, end: ClockOffset | None) -> float:
    """How far a node's timestamps, converted with the offset measured at the start, can be from the driver's
    clock at any moment of the run: the start's uncertainty, plus the drift seen by the end (when measured)."""
    if end is None:
        return start.uncertainty_s
    return max(start.uncertainty_s, end.uncertainty_s) + abs(end.offset_s - start.offset_s)
