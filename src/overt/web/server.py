"""Running the ASGI app in a background thread (for the demo and for tests).

`overt log serve` runs uvicorn in the foreground; the demo needs its server
up while it goes on to add entries over HTTP, so it runs uvicorn's `Server` in
a thread and waits until the socket is bound. Port 0 picks a free port.
"""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from overt.errors import OvertError


class BackgroundServer:
    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="overt-http", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 30) -> str:
        """Start serving; return the base URL once the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise OvertError(f"the HTTP server could not start on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                raise OvertError("the HTTP server did not start in time")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return f"http://{self.host}:{self.port}"

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C arrives as KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
