"""A stand-in for the lab's reverse proxy in browser tests: a small TCP relay that inserts
given headers into the head of every HTTP request it forwards (the websocket's opening request
included), as nginx's ``proxy_set_header`` does. Browsers do not put extra headers on
websocket handshakes, so this is how a test delivers them where the app reads them."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, port: int, extra: bytes) -> None:
    with client, socket.create_connection(("127.0.0.1", port)) as up:
        head = b""
        while b"\r\n\r\n" not in head:  # the request line and headers of the first request
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        line, rest = head.split(b"\r\n", 1)
        up.sendall(line + b"\r\n" + extra + rest)
        back = threading.Thread(target=_pipe, args=(up, client), daemon=True)
        back.start()
        _pipe(client, up)  # later requests on a kept-alive connection pass unchanged
        back.join(timeout=30)


@contextlib.contextmanager
def header_proxy(port: int, headers: dict[str, str]) -> Iterator[str]:
    """``http://127.0.0.1:<proxy port>`` relaying to ``port`` with ``headers`` added."""
    extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve, args=(client, port, extra), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
