"""A TCP proxy between dbsystem and a real server, with the network faults a test needs.

``TcpProxy(("127.0.0.1", 5432)).start()`` listens on a free loopback port and forwards each
connection to the server; ``proxy.url(url)`` points a URL at it. Modes, switched at any time:

* ``forward()``: pass bytes both ways (the default);
* ``down()``: stop listening and reset every connection (connects are refused); ``up()``
  listens again on the same port;
* ``reset()``: reset every established connection now (RST), keep accepting new ones;
* ``blackhole()``: accept connections but pass nothing either way, on new and established
  connections alike: the server looks alive at the TCP level and never answers;
* ``latency(seconds)``: delay every chunk by ``seconds`` in each direction;
* ``cut_after(marker)``: forward the next client chunk holding ``marker`` (``b"COMMIT"``),
  then reset that connection before the server's reply comes back.
"""

from __future__ import annotations

import socket
import struct
import threading
import time


def _reset(sock: socket.socket) -> None:
    """Close with an RST (linger 0), not a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.mode = "forward"
        self.delay = 0.0
        self.marker: bytes | None = None
        self.cuts = 0
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._muted: set[int] = set()  # pairs whose server-to-client bytes are dropped
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        return self.up()

    def up(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not (Linux)
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        self.reset()

    stop = down

    # -- modes -----------------------------------------------------------------------------

    def forward(self) -> None:
        self.mode, self.delay, self.marker = "forward", 0.0, None

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def latency(self, seconds: float) -> None:
        self.delay = seconds

    def cut_after(self, marker: bytes) -> None:
        self.marker = marker

    def reset(self) -> None:
        """Reset every established connection (both sides)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            _reset(client)
            if server is not None:
                _reset(server)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        host, port = self.target
        return url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}")

    # -- the forwarding --------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.mode == "blackhole":  # hold it open, answer nothing
                with self._lock:
                    self._pairs.append((client, None))
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            pair = (client, server)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(
                target=self._pipe, args=(client, server, True, pair), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(server, client, False, pair), daemon=True
            ).start()

    def _swallow(self, sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        from_client: bool,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while data := source.recv(65536):
                if self.mode == "blackhole" or (not from_client and id(pair) in self._muted):
                    continue  # swallowed
                if self.delay:
                    time.sleep(self.delay)
                marker = self.marker
                cut = from_client and marker is not None and marker in data
                if cut:
                    self.marker = None
                    self._muted.add(id(pair))  # the server's reply must not come back
                sink.sendall(data)
                if cut:
                    self.cuts += 1
                    time.sleep(0.1)  # the server gets and runs it
                    _reset(pair[0])
                    _reset(pair[1])
                    return
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
