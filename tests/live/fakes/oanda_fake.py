"""A fake OANDA v20 practice account: REST (summary, instruments, orders by id and ``@clientID``, cancel,
pending orders, open positions, transactions by time pages, ``idrange`` and ``sinceid``, bid/ask candles) and
the chunked JSON-lines transactions stream with heartbeats."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from aiohttp import web

from backforge.live._venue import dt_ns, ns_iso
from .server import FakeServer, json_response

TOKEN = "0123456789abcdef0123456789abcdef-fedcba9876543210fedcba9876543210"
ACCOUNT = "101-004-1234567-001"
T0 = 1_704_205_800_000_000_000

INSTRUMENTS = {"EUR_USD": (5, 0, "1"), "USD_JPY": (3, 0, "1"), "EUR_GBP": (5, 0, "1"), "XAU_USD": (3, 0, "1")}


@dataclass
class OandaVenue:
    token: str = TOKEN
    account: str = ACCOUNT
    balance: float = 100_000.0
    margin_rate: float = 0.02
    prices: dict = field(default_factory=lambda: {"EUR_USD": (1.10000, 1.10010), "USD_JPY": (145.000, 145.010),
                                                  "EUR_GBP": (0.86000, 0.86010), "XAU_USD": (2000.0, 2000.5)})
    transactions: list = field(default_factory=list)
    orders: dict = field(default_factory=dict)        # id -> order json
    units: dict = field(default_factory=dict)         # instrument -> [units, avg price]
    candles: dict = field(default_factory=dict)       # instrument -> list of dicts
    streams: set = field(default_factory=set)         # asyncio.Queue per open transactions stream
    heartbeat: float = 0.2
    drop_event: asyncio.Event | None = None
    stopping: bool = False
    created: list = field(default_factory=list)       # clientExtensions.id of every create request, as received
    fill_price: object = None                         # (instrument, client id) -> price of a market order's fill

    def txn(self, kind: str, **fields) -> dict:
        txn = {"id": str(len(self.transactions) + 1), "time": ns_iso(time.time_ns()) .replace("Z", "000Z"),
               "userID": 1, "accountID": self.account, "batchID": str(len(self.transactions) + 1),
               "requestID": "1" + str(len(self.transactions)), "type": kind, **fields}
        self.transactions.append(txn)
        for queue in list(self.streams):
            queue.put_nowait(txn)
        return txn

    def last_id(self) -> str:
        return str(len(self.transactions))

    def find(self, spec: str) -> dict | None:
        if spec.startswith("@"):
            return next((o for o in self.orders.values() if (o.get("clientExtensions") or {}).get("id") == spec[1:]), None)
        return self.orders.get(spec)

    def position_fill(self, order: dict, units: float, price: float, silent: bool = False) -> dict:
        pos = self.units.setdefault(order["instrument"], [0.0, 0.0])
        if pos[0] == 0 or (pos[0] > 0) == (units > 0):
            pos[1] = (pos[0] * pos[1] + units * price) / (pos[0] + units)
        pos[0] += units
        fill = dict(orderID=order["id"], clientOrderID=(order.get("clientExtensions") or {}).get("id"),
                    instrument=order["instrument"], units=f"{units:g}", price=f"{price:.5f}",
                    fullVWAP=f"{price:.5f}", reason=order["type"] + "_ORDER", pl="0.0000", financing="0.0000",
                    commission="0.0000", accountBalance=f"{self.balance:.4f}", halfSpreadCost="0.0000")
        if silent:  # executed while every stream was down: recorded, not pushed
            streams, self.streams = self.streams, set()
            txn = self.txn("ORDER_FILL", **fill)
            self.streams = streams
            return txn
        return self.txn("ORDER_FILL", **fill)

    def fill(self, client_id: str, units: float, price: float, silent: bool = False) -> dict:
        order = self.find("@" + client_id)
        signed = units if float(order["units"]) > 0 else -units
        txn = self.position_fill(order, signed, price, silent=silent)
        order["_filled"] = order.get("_filled", 0.0) + units
        if order["_filled"] >= abs(float(order["units"])) - 1e-9:
            order.update(state="FILLED", filledTime=txn["time"], fillingTransactionID=txn["id"])
        return txn

    def public(self, order: dict) -> dict:
        return {k: v for k, v in order.items() if not k.startswith("_")}


def build_app(venue: OandaVenue, server_ref: list) -> web.Application:
    routes = web.RouteTableDef()
    base = "/v3/accounts/{account}"

    def error(status: int, message: str, code: str | None = None, **extra) -> web.Response:
        body = {"errorMessage": message, **extra}
        if code:
            body["errorCode"] = code
        return json_response(body, status=status)

    @web.middleware
    async def auth(request, handler):
        if request.headers.get("Authorization") != f"Bearer {venue.token}":
            return error(401, "Insufficient authorization to perform request.")
        if "account" in request.match_info and request.match_info["account"] != venue.account:
            return error(403, "The provided request was forbidden.")
        return await handler(request)

    @routes.get(base + "/summary")
    async def summary(request):
        unrealized = sum(u * ((venue.prices[i][0] + venue.prices[i][1]) / 2 - a) for i, (u, a) in venue.units.items())
        used = sum(abs(u) * a * venue.margin_rate for u, a in venue.units.values())
        return json_response({"account": {
            "id": venue.account, "alias": "Primary", "currency": "USD", "balance": f"{venue.balance:.4f}",
            "NAV": f"{venue.balance + unrealized:.4f}", "unrealizedPL": f"{unrealized:.4f}",
            "marginUsed": f"{used:.4f}", "marginAvailable": f"{venue.balance + unrealized - used:.4f}",
            "openTradeCount": 0, "openPositionCount": len(venue.units),
            "pendingOrderCount": sum(o["state"] == "PENDING" for o in venue.orders.values()),
            "lastTransactionID": venue.last_id()}, "lastTransactionID": venue.last_id()})

    @routes.get(base + "/instruments")
    async def instruments(request):
        out = []
        for name, (display, units_precision, minimum) in INSTRUMENTS.items():
            out.append({"name": name, "type": "CURRENCY" if "XAU" not in name else "METAL",
                        "displayName": name.replace("_", "/"), "pipLocation": -4 if display == 5 else -2,
                        "displayPrecision": display, "tradeUnitsPrecision": units_precision,
                        "minimumTradeSize": minimum, "maximumTrailingStopDistance": "1.00000",
                        "minimumTrailingStopDistance": "0.00050", "maximumPositionSize": "0",
                        "maximumOrderUnits": "100000000", "marginRate": f"{venue.margin_rate}"})
        return json_response({"instruments": out, "lastTransactionID": venue.last_id()})

    @routes.post(base + "/orders")
    async def create(request):
        order = (await request.json())["order"]
        instrument = order["instrument"]
        kind = order["type"]
        cid = (order.get("clientExtensions") or {}).get("id")
        venue.created.append(cid)
        reject_type = f"{kind}_ORDER_REJECT"
        if instrument not in INSTRUMENTS:
            txn = venue.txn(reject_type, instrument=instrument, units=order["units"], rejectReason="INSTRUMENT_UNKNOWN")
            return error(400, "Instrument unknown", "INSTRUMENT_UNKNOWN", orderRejectTransaction=txn,
                         lastTransactionID=venue.last_id())
        if cid and venue.find("@" + cid):
            txn = venue.txn(reject_type, instrument=instrument, units=order["units"],
                            rejectReason="CLIENT_ORDER_ID_ALREADY_EXISTS")
            return error(400, "The client order ID specified is already assigned", "CLIENT_ORDER_ID_ALREADY_EXISTS",
                         orderRejectTransaction=txn, lastTransactionID=venue.last_id())
        display = INSTRUMENTS[instrument][0]
        for key in ("price", "priceBound"):
            if key in order and len(order[key].split(".")[-1]) > display:
                txn = venue.txn(reject_type, instrument=instrument, units=order["units"],
                                rejectReason="PRICE_PRECISION_EXCEEDED")
                return error(400, "The price specified contains more precision than is allowed",
                             "PRICE_PRECISION_EXCEEDED", orderRejectTransaction=txn, lastTransactionID=venue.last_id())
        units = float(order["units"])
        create_txn = venue.txn(f"{kind}_ORDER", **{k: v for k, v in order.items() if k != "type"},
                               reason="CLIENT_ORDER")
        stored = {"id": create_txn["id"], "createTime": create_txn["time"], "state": "PENDING", **order,
                  "triggerCondition": "DEFAULT", "partialFill": "DEFAULT_FILL"}
        venue.orders[stored["id"]] = stored
        answer = {"orderCreateTransaction": create_txn, "relatedTransactionIDs": [create_txn["id"]]}
        if kind == "MARKET":
            bid, ask = venue.prices[instrument]
            price = ask if units > 0 else bid
            if venue.fill_price is not None:
                price = venue.fill_price(instrument, cid)
            if abs(units) * price * venue.margin_rate > venue.balance:
                cancel = venue.txn("ORDER_CANCEL", orderID=stored["id"], clientOrderID=cid, reason="INSUFFICIENT_MARGIN")
                stored.update(state="CANCELLED", cancelledTime=cancel["time"], cancellingTransactionID=cancel["id"])
                answer["orderCancelTransaction"] = cancel
            else:
                fill = venue.position_fill(stored, units, price)
                stored.update(state="FILLED", filledTime=fill["time"], fillingTransactionID=fill["id"])
                answer["orderFillTransaction"] = fill
        answer["lastTransactionID"] = venue.last_id()
        return json_response(answer, status=201)

    @routes.get(base + "/orders/{spec}")
    async def get_order(request):
        order = venue.find(request.match_info["spec"])
        if order is None:
            return error(404, "The Order specified does not exist", "NO_SUCH_ORDER")
        return json_response({"order": venue.public(order), "lastTransactionID": venue.last_id()})

    @routes.put(base + "/orders/{spec}")
    async def replace(request):
        old = venue.find(request.match_info["spec"])
        if old is None or old["state"] != "PENDING":
            return error(404, "The Order specified does not exist", "NO_SUCH_ORDER")
        order = (await request.json())["order"]
        cancel = venue.txn("ORDER_CANCEL", orderID=old["id"], reason="CLIENT_REQUEST_REPLACED")
        old.update(state="CANCELLED", cancelledTime=cancel["time"])
        create = venue.txn(f"{order['type']}_ORDER", **{k: v for k, v in order.items() if k != "type"},
                           reason="REPLACEMENT", replacesOrderID=old["id"])
        venue.orders[create["id"]] = {"id": create["id"], "createTime": create["time"], "state": "PENDING", **order}
        return json_response({"orderCancelTransaction": cancel, "orderCreateTransaction": create,
                              "lastTransactionID": venue.last_id()}, status=201)

    @routes.put(base + "/orders/{spec}/cancel")
    async def cancel(request):
        order = venue.find(request.match_info["spec"])
        if order is None or order["state"] != "PENDING":
            return error(404, "The Order specified does not exist", "ORDER_DOESNT_EXIST")
        txn = venue.txn("ORDER_CANCEL", orderID=order["id"], clientOrderID=(order.get("clientExtensions") or {}).get("id"),
                        reason="CLIENT_REQUEST")
        order.update(state="CANCELLED", cancelledTime=txn["time"], cancellingTransactionID=txn["id"])
        return json_response({"orderCancelTransaction": txn, "relatedTransactionIDs": [txn["id"]],
                              "lastTransactionID": venue.last_id()})

    @routes.get(base + "/pendingOrders")
    async def pending(request):
        return json_response({"orders": [venue.public(o) for o in venue.orders.values() if o["state"] == "PENDING"],
                              "lastTransactionID": venue.last_id()})

    @routes.get(base + "/openPositions")
    async def positions(request):
        out = []
        for instrument, (units, avg) in venue.units.items():
            if units == 0:
                continue
            side = {"units": f"{units:g}", "averagePrice": f"{avg:.5f}", "pl": "0", "unrealizedPL": "0"}
            flat = {"units": "0", "pl": "0", "unrealizedPL": "0"}
            out.append({"instrument": instrument, "long": side if units > 0 else flat,
                        "short": side if units < 0 else flat, "pl": "0", "unrealizedPL": "0", "marginUsed": "0"})
        return json_response({"positions": out, "lastTransactionID": venue.last_id()})

    def select(items, request):
        kinds = set(request.query.get("type", "").split(",")) - {""}
        return [t for t in items if not kinds or t["type"] in kinds]

    @routes.get(base + "/transactions")
    async def transactions(request):
        since = dt_ns(request.query["from"]) if "from" in request.query else 0
        ids = [int(t["id"]) for t in venue.transactions if dt_ns(t["time"]) >= since]
        size = int(request.query.get("pageSize", 100))
        pages = []
        if ids:
            for start in range(ids[0], ids[-1] + 1, size):
                end = min(start + size - 1, ids[-1])
                kinds = request.query.get("type", "")
                pages.append(f"{server_ref[0].url}/v3/accounts/{venue.account}/transactions/idrange?from={start}&to={end}"
                             + (f"&type={kinds}" if kinds else ""))
        return json_response({"from": request.query.get("from", ""), "pageSize": size, "count": len(ids),
                              "pages": pages, "lastTransactionID": venue.last_id()})

    @routes.get(base + "/transactions/idrange")
    async def idrange(request):
        lo, hi = int(request.query["from"]), int(request.query["to"])
        rows = [t for t in venue.transactions if lo <= int(t["id"]) <= hi]
        return json_response({"transactions": select(rows, request), "lastTransactionID": venue.last_id()})

    @routes.get(base + "/transactions/sinceid")
    async def sinceid(request):
        after = int(request.query["id"])
        rows = [t for t in venue.transactions if int(t["id"]) > after]
        return json_response({"transactions": rows, "lastTransactionID": venue.last_id()})

    @routes.get(base + "/transactions/stream")
    async def stream(request):
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        venue.streams.add(queue)
        if venue.drop_event is None:
            venue.drop_event = asyncio.Event()
        drop = venue.drop_event
        last_sent = time.monotonic()
        try:
            while not drop.is_set() and not venue.stopping:
                try:
                    txn = await asyncio.wait_for(queue.get(), 0.05)
                    line = json.dumps(txn)
                except asyncio.TimeoutError:
                    if time.monotonic() - last_sent < venue.heartbeat:
                        continue
                    line = json.dumps({"type": "HEARTBEAT", "lastTransactionID": venue.last_id(),
                                       "time": ns_iso(time.time_ns())})
                last_sent = time.monotonic()
                try:
                    await response.write(line.encode() + b"\n")
                except (ConnectionResetError, RuntimeError):  # the client went away
                    return response
            if request.transport is not None:
                request.transport.close()  # the venue side of a network drop: no clean end of stream
        finally:
            venue.streams.discard(queue)
        return response

    @routes.get("/v3/instruments/{instrument}/candles")
    async def candles(request):
        q = request.query
        if q.get("price") != "BA":
            return error(400, "this fake serves bid/ask candles only")
        rows = venue.candles.get(request.match_info["instrument"], [])
        if "from" in q:
            rows = [c for c in rows if dt_ns(c["time"]) >= dt_ns(q["from"])]
        if "to" in q:
            rows = [c for c in rows if dt_ns(c["time"]) < dt_ns(q["to"])]
        if "count" in q:
            rows = rows[-int(q["count"]):] if "from" not in q else rows[: int(q["count"])]
        return json_response({"instrument": request.match_info["instrument"], "granularity": q.get("granularity", "S5"),
                              "candles": rows})

    app = web.Application(middlewares=[auth])
    app.add_routes(routes)
    return app


def candle(ts_ns: int, bid: tuple, ask: tuple, volume: int = 10, complete: bool = True) -> dict:
    def ohlc(values):
        return {k: f"{v:.5f}" for k, v in zip("ohlc", values)}
    return {"complete": complete, "volume": volume, "time": ns_iso(ts_ns).replace("Z", "000Z"),
            "bid": ohlc(bid), "ask": ohlc(ask)}


def start() -> tuple[FakeServer, OandaVenue]:
    venue = OandaVenue()
    ref: list = [None]
    server = FakeServer(build_app(venue, ref))
    ref[0] = server
    original_stop = server.stop

    def stop() -> None:  # end the open streams first, so the server does not wait for them
        venue.stopping = True
        original_stop()
    server.stop = stop
    return server, venue


def drop_streams(server: FakeServer, venue: OandaVenue) -> None:
    """End every open transactions stream abruptly; new connections are accepted again at once."""
    async def drop():
        if venue.drop_event is not None:
            venue.drop_event.set()
        venue.drop_event = asyncio.Event()
    server.call(drop)


def on_loop(server: FakeServer, fn, *args):
    """Run a plain venue action on the server's loop (its stream queues belong to that loop)."""
    async def call():
        return fn(*args)
    return server.call(call)
