"""A real aiohttp HTTP + websocket server on 127.0.0.1 in a background thread, plus the fault knobs every
fake venue shares: answer the next matching request with a status (429 + Retry-After, 401, 500), or
accept it and then stall past the client's timeout."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Fault:
    method: str
    path_prefix: str
    status: int = 0                 # answer with this status instead of handling
    headers: dict = field(default_factory=dict)
    body: str = ""
    stall: float = 0.0              # handle the request (the venue acts), then wait this long before answering
    times: int = 1


class FakeServer:
    """Runs ``app`` on an ephemeral port; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, app: web.Application) -> None:
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []   # (method, path) of every request, for assertions
        self.sockets: set[web.WebSocketResponse] = set()
        app.middlewares.insert(0, self._fault_middleware)
        self._app = app
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="fake-venue", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake venue did not start")

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._runner = web.AppRunner(self._app, handle_signals=False)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def fault(self, method: str, path_prefix: str, **kwargs) -> Fault:
        item = Fault(method.upper(), path_prefix, **kwargs)
        self.faults.append(item)
        return item

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method.upper() and p.startswith(path_prefix))

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler):
        self.requests.append((request.method, request.path))
        for item in list(self.faults):
            if item.method == request.method and request.path.startswith(item.path_prefix):
                item.times -= 1
                if item.times <= 0:
                    self.faults.remove(item)
                if item.status:
                    return web.Response(status=item.status, headers=item.headers, text=item.body,
                                        content_type="application/json")
                response = await handler(request)
                await asyncio.sleep(item.stall)
                return response
        return await handler(request)

    def call(self, coro_fn, *args, timeout: float = 5.0):
        """Run ``coro_fn(*args)`` on the server's loop (to push websocket messages from a test)."""
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop).result(timeout)

    def drop_sockets(self) -> None:
        """Close every open websocket abruptly (the venue's side of a network drop)."""
        async def drop():
            for ws in list(self.sockets):
                await ws.close(code=1011, message=b"dropped")
        self.call(drop)

    def stop(self) -> None:
        async def close_all():
            for ws in list(self.sockets):
                await ws.close()
        try:
            self.call(close_all)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def json_response(payload, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json",
                        headers=headers)
