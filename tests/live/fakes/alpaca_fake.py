"""A fake Alpaca: the Trading API v2 (account, assets, orders, positions, FILL activities), the
trade-updates websocket (JSON ``authenticate``/``listen``), the market-data bars endpoint and the msgpack bar
stream, with the shapes alpaca-py parses (its pydantic models validate every answer)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

import msgpack
from aiohttp import WSMsgType, web

from backforge.live._venue import ns_iso
from .server import FakeServer, json_response

KEY, SECRET = "PKFAKEKEY0123456789", "fake-secret-0123456789abcdef"
T0 = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC


@dataclass
class AlpacaVenue:
    key: str = KEY
    secret: str = SECRET
    cash: float = 100_000.0
    assets: dict = field(default_factory=lambda: {
        "AAPL": {"fractionable": True}, "MSFT": {"fractionable": True}, "AAP": {"fractionable": False},
        "GOOG": {"fractionable": False}})
    orders: dict = field(default_factory=dict)          # id -> order json
    activities: list = field(default_factory=list)
    positions: dict = field(default_factory=dict)       # symbol -> [qty, avg]
    bars: dict = field(default_factory=dict)            # symbol -> list of (ts_ns, o, h, l, c, v)
    clock_ns: int = 0
    trade_sockets: set = field(default_factory=set)
    data_sockets: set = field(default_factory=set)
    created: list = field(default_factory=list)         # client_order_id of every create request, as received
    fill_price: object = None                           # (symbol, client_order_id) -> price: fill market orders

    def tick(self) -> str:
        """The venue's clock: wall time, strictly increasing."""
        self.clock_ns = max(self.clock_ns + 1_000, time.time_ns())
        return ns_iso(self.clock_ns)

    # -------------------------------------------------------------- venue actions driven by tests
    def order_json(self, client_order_id: str) -> dict:
        return next(o for o in self.orders.values() if o["client_order_id"] == client_order_id)

    def new_order(self, body: dict) -> dict:
        now = self.tick()
        oid = str(uuid.uuid4())
        order = {
            "id": oid, "client_order_id": body.get("client_order_id") or str(uuid.uuid4()), "created_at": now,
            "updated_at": now, "submitted_at": now, "filled_at": None, "expired_at": None, "canceled_at": None,
            "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body["symbol"])), "symbol": body["symbol"],
            "asset_class": "us_equity", "notional": None, "qty": str(body["qty"]), "filled_qty": "0",
            "filled_avg_price": None, "order_class": body.get("order_class") or "simple",
            "order_type": body["type"], "type": body["type"], "side": body["side"],
            "time_in_force": body["time_in_force"], "limit_price": body.get("limit_price"),
            "stop_price": body.get("stop_price"), "status": "new", "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None,
        }
        self.orders[oid] = order
        return order

    async def push(self, event: str, order: dict, **extra) -> None:
        message = {"stream": "trade_updates", "data": {"event": event, "order": order,
                                                       "timestamp": order["updated_at"], **extra}}
        for ws in list(self.trade_sockets):
            await ws.send_bytes(json.dumps(message).encode())

    async def fill(self, client_order_id: str, qty: float, price: float, push: bool = True) -> dict:
        order = self.order_json(client_order_id)
        done = float(order["filled_qty"]) + qty
        avg = ((float(order["filled_avg_price"] or 0) * float(order["filled_qty"])) + qty * price) / done
        now = self.tick()
        order.update(filled_qty=f"{done:g}", filled_avg_price=f"{avg:g}", updated_at=now,
                     status="filled" if done >= float(order["qty"]) - 1e-12 else "partially_filled")
        if order["status"] == "filled":
            order["filled_at"] = now
        signed = qty if order["side"] == "buy" else -qty
        pos = self.positions.setdefault(order["symbol"], [0.0, 0.0])
        if pos[0] == 0 or (pos[0] > 0) == (signed > 0):
            pos[1] = (pos[0] * pos[1] + signed * price) / (pos[0] + signed)
        pos[0] += signed
        self.cash -= signed * price
        self.activities.append({
            "id": f"{now.replace('-', '').replace(':', '').replace('.', '')[:17]}::{uuid.uuid4()}",
            "activity_type": "FILL", "transaction_time": now,
            "type": "fill" if order["status"] == "filled" else "partial_fill", "price": f"{price:g}",
            "qty": f"{qty:g}", "side": order["side"], "symbol": order["symbol"],
            "leaves_qty": f"{float(order['qty']) - done:g}", "order_id": order["id"], "cum_qty": f"{done:g}",
            "order_status": order["status"]})
        if push:
            await self.push("fill" if order["status"] == "filled" else "partial_fill", order,
                            price=f"{price:g}", qty=f"{qty:g}", position_qty=f"{pos[0]:g}",
                            execution_id=str(uuid.uuid4()))
        return order

    async def replay_last_fill(self) -> None:
        """Send the last fill again on the stream (venues do replay after a reconnect)."""
        act = self.activities[-1]
        order = self.orders[act["order_id"]]
        await self.push(act["type"], order, price=act["price"], qty=act["qty"], execution_id=str(uuid.uuid4()))

    async def push_bar(self, symbol: str, ts_ns: int, o: float, h: float, low: float, c: float, v: float,
                       store: bool = True) -> None:
        if store:
            self.bars.setdefault(symbol, []).append((ts_ns, o, h, low, c, v))
        sec, nsec = divmod(ts_ns, 1_000_000_000)
        frame = msgpack.packb([{"T": "b", "S": symbol, "o": o, "h": h, "l": low, "c": c, "v": v,
                                "t": msgpack.Timestamp(sec, nsec), "n": 10, "vw": c}])
        for ws in list(self.data_sockets):
            await ws.send_bytes(frame)


def _authorized(venue: AlpacaVenue, request: web.Request) -> bool:
    return (request.headers.get("APCA-API-KEY-ID") == venue.key
            and request.headers.get("APCA-API-SECRET-KEY") == venue.secret)


def build_app(venue: AlpacaVenue, server_ref: list) -> web.Application:
    routes = web.RouteTableDef()

    def error(status: int, code: int, message: str) -> web.Response:
        return json_response({"code": code, "message": message}, status=status)

    @web.middleware
    async def auth(request, handler):
        if request.path.startswith("/stream") or request.path.startswith("/v2/iex"):
            return await handler(request)
        if not _authorized(venue, request):
            return error(401, 40110000, "request is not authorized")
        return await handler(request)

    @routes.get("/v2/account")
    async def account(request):
        equity = venue.cash + sum(q * a for q, a in venue.positions.values())
        return json_response({"id": str(uuid.uuid4()), "account_number": "PA0000FAKE", "status": "ACTIVE",
                              "currency": "USD", "cash": f"{venue.cash:.2f}", "equity": f"{equity:.2f}",
                              "buying_power": f"{2 * venue.cash:.2f}", "pattern_day_trader": False})

    @routes.get("/v2/assets")
    async def assets(request):
        return json_response([
            {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, s)), "class": "us_equity", "exchange": "NASDAQ", "symbol": s,
             "name": s, "status": "active", "tradable": True, "marginable": True, "shortable": True,
             "easy_to_borrow": True, "fractionable": a["fractionable"]} for s, a in venue.assets.items()])

    @routes.post("/v2/orders")
    async def submit(request):
        body = await request.json()
        venue.created.append(body.get("client_order_id"))
        if body["symbol"] not in venue.assets:
            return error(422, 40010001, f"asset \"{body['symbol']}\" not found")
        cid = body.get("client_order_id")
        if cid and any(o["client_order_id"] == cid for o in venue.orders.values()):
            return error(422, 40010001, "client_order_id must be unique")
        qty = float(body["qty"])
        if not venue.assets[body["symbol"]]["fractionable"] and not qty.is_integer():
            return error(422, 40010001, "fractional orders are not supported for this asset")
        price = float(body.get("limit_price") or body.get("stop_price") or 100.0)
        if body["side"] == "buy" and qty * price > 2 * venue.cash:
            return error(403, 40310000, "insufficient buying power")
        order = venue.new_order(body)
        await venue.push("new", order)
        if venue.fill_price is not None and body["type"] == "market":  # a liquid market: filled on arrival
            order = await venue.fill(order["client_order_id"], qty, venue.fill_price(body["symbol"],
                                                                                      order["client_order_id"]))
        return json_response(order)

    @routes.get("/v2/orders")
    async def list_orders(request):
        status = request.query.get("status", "open")
        open_states = {"new", "accepted", "partially_filled", "pending_new", "pending_cancel"}
        out = [o for o in venue.orders.values() if status == "all" or (o["status"] in open_states) == (status == "open")]
        return json_response(out)

    @routes.get("/v2/orders:by_client_order_id")
    async def by_client_id(request):
        cid = request.query.get("client_order_id")
        for o in venue.orders.values():
            if o["client_order_id"] == cid:
                return json_response(o)
        return error(404, 40410000, "order not found")

    @routes.get("/v2/orders/{oid}")
    async def get_order(request):
        o = venue.orders.get(request.match_info["oid"])
        return json_response(o) if o else error(404, 40410000, "order not found")

    @routes.delete("/v2/orders/{oid}")
    async def cancel(request):
        o = venue.orders.get(request.match_info["oid"])
        if o is None:
            return error(404, 40410000, "order not found")
        if o["status"] in ("filled", "canceled", "expired", "rejected"):
            return error(422, 42210000, f"order is already in \"{o['status']}\" state")
        o.update(status="canceled", canceled_at=venue.tick(), updated_at=ns_iso(venue.clock_ns))
        await venue.push("canceled", o)
        return web.Response(status=204)

    @routes.patch("/v2/orders/{oid}")
    async def replace(request):
        old = venue.orders.get(request.match_info["oid"])
        if old is None or old["status"] not in ("new", "accepted", "partially_filled"):
            return error(422, 42210000, "order is not replaceable")
        body = await request.json()
        new = venue.new_order({**{k: old[k] for k in ("symbol", "side", "type", "time_in_force", "limit_price",
                                                      "stop_price", "qty")}, **body})
        new["replaces"] = old["id"]
        old.update(status="replaced", replaced_by=new["id"], replaced_at=new["created_at"])
        await venue.push("replaced", old)
        return json_response(new)

    @routes.get("/v2/positions")
    async def positions(request):
        out = []
        for s, (q, a) in venue.positions.items():
            if q == 0:
                continue
            out.append({"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, s)), "symbol": s, "exchange": "NASDAQ",
                        "asset_class": "us_equity", "avg_entry_price": f"{a:g}", "qty": f"{q:g}",
                        "qty_available": f"{q:g}", "side": "long" if q > 0 else "short",
                        "market_value": f"{q * a:g}", "cost_basis": f"{q * a:g}", "unrealized_pl": "0",
                        "unrealized_plpc": "0", "unrealized_intraday_pl": "0", "unrealized_intraday_plpc": "0",
                        "current_price": f"{a:g}", "lastday_price": f"{a:g}", "change_today": "0"})
        return json_response(out)

    @routes.get("/v2/account/activities/FILL")
    async def fills(request):
        items = venue.activities
        after = request.query.get("after")
        if after:
            from backforge.live._venue import dt_ns
            items = [a for a in items if dt_ns(a["transaction_time"]) > dt_ns(after)]
        token = request.query.get("page_token")
        if token:
            ids = [a["id"] for a in items]
            items = items[ids.index(token) + 1:] if token in ids else []
        return json_response(items[: int(request.query.get("page_size", 100))])

    @routes.get("/v2/stocks/bars")
    async def stock_bars(request):
        from backforge.live._venue import dt_ns
        start, end = dt_ns(request.query["start"]), dt_ns(request.query["end"])
        out = {}
        for s in request.query["symbols"].split(","):
            rows = [r for r in venue.bars.get(s, []) if start <= r[0] <= end]
            if rows:
                out[s] = [{"t": ns_iso(r[0]).replace(".000000", ""), "o": r[1], "h": r[2], "l": r[3], "c": r[4],
                           "v": r[5], "n": 10, "vw": r[4]} for r in rows]
        return json_response({"bars": out, "next_page_token": None})

    @routes.get("/stream")
    async def trade_stream(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        server_ref[0].sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                data = json.loads(msg.data)
                if data.get("action") == "authenticate":
                    ok = data["data"].get("key_id") == venue.key and data["data"].get("secret_key") == venue.secret
                    await ws.send_bytes(json.dumps({"stream": "authorization", "data": {
                        "status": "authorized" if ok else "unauthorized", "action": "authenticate"}}).encode())
                    if not ok:
                        await ws.close()
                elif data.get("action") == "listen":
                    await ws.send_bytes(json.dumps({"stream": "listening", "data": {
                        "streams": data["data"]["streams"]}}).encode())
                    venue.trade_sockets.add(ws)
        finally:
            venue.trade_sockets.discard(ws)
            server_ref[0].sockets.discard(ws)
        return ws

    @routes.get("/v2/iex")
    async def data_stream(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        server_ref[0].sockets.add(ws)
        await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "connected"}]))
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                data = msgpack.unpackb(msg.data)
                if data.get("action") == "auth":
                    ok = data.get("key") == venue.key and data.get("secret") == venue.secret
                    await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "authenticated"} if ok else
                                                       {"T": "error", "code": 402, "msg": "auth failed"}]))
                elif data.get("action") == "subscribe":
                    await ws.send_bytes(msgpack.packb([{"T": "subscription", "trades": [], "quotes": [],
                                                        "bars": data.get("bars", [])}]))
                    venue.data_sockets.add(ws)
        finally:
            venue.data_sockets.discard(ws)
            server_ref[0].sockets.discard(ws)
        return ws

    app = web.Application(middlewares=[auth])
    app.add_routes(routes)
    return app


def start() -> tuple[FakeServer, AlpacaVenue]:
    venue = AlpacaVenue()
    ref: list = [None]
    server = FakeServer(build_app(venue, ref))
    ref[0] = server
    return server, venue


def run(server: FakeServer, coro) -> object:
    return asyncio.run_coroutine_threadsafe(coro, server.loop).result(5)
