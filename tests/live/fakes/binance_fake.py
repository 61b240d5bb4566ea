"""A fake Binance spot testnet for ccxt: REST ``/api/v3`` (exchangeInfo with PRICE_FILTER / LOT_SIZE /
NOTIONAL filters, signed order endpoints checked by HMAC-SHA256, myTrades, account, klines, ticker), the
WebSocket API user-data subscription (``userDataStream.subscribe.signature`` then ``executionReport`` events)
and the market stream ``<symbol>@kline_<interval>`` (``SUBSCRIBE``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from .server import FakeServer, json_response

KEY, SECRET = "binance-fake-key-0123456789", "binance-fake-secret-abcdef0123456789"
T0_MS = 1_704_205_800_000

SYMBOLS = {
    "BTCUSDT": ("BTC", "USDT", "0.01", "0.00001", "0.00001", "5.00"),
    "ETHUSDT": ("ETH", "USDT", "0.01", "0.0001", "0.0001", "5.00"),
    "BTCUSDC": ("BTC", "USDC", "0.01", "0.00001", "0.00001", "5.00"),
}


@dataclass
class BinanceVenue:
    key: str = KEY
    secret: str = SECRET
    balances: dict = field(default_factory=lambda: {"USDT": 10_000.0, "BTC": 0.0, "ETH": 0.0, "USDC": 0.0})
    orders: dict = field(default_factory=dict)      # orderId -> order json
    trades: list = field(default_factory=list)
    klines: dict = field(default_factory=dict)      # symbol -> list of [t, o, h, l, c, v]
    last: dict = field(default_factory=lambda: {"BTCUSDT": 42_000.0, "ETHUSDT": 2_200.0, "BTCUSDC": 42_000.0})
    user_sockets: set = field(default_factory=set)
    kline_sockets: dict = field(default_factory=dict)   # ws -> set of stream names
    next_order_id: int = 1000
    created: list = field(default_factory=list)     # newClientOrderId of every create request, as received
    fill_price: object = None                       # (symbol, client_order_id) -> price: fill market orders
    next_trade_id: int = 5000

    def now(self) -> int:
        return int(time.time() * 1000)

    def by_client_id(self, cid: str) -> dict | None:
        return next((o for o in self.orders.values() if o["clientOrderId"] == cid), None)

    def new_order(self, params: dict) -> dict:
        self.next_order_id += 1
        now = self.now()
        order = {"symbol": params["symbol"], "orderId": self.next_order_id, "orderListId": -1,
                 "clientOrderId": params.get("newClientOrderId") or f"x-ext{self.next_order_id}",
                 "price": params.get("price", "0.00000000"), "origQty": params["quantity"],
                 "executedQty": "0.00000000", "cummulativeQuoteQty": "0.00000000", "status": "NEW",
                 "timeInForce": params.get("timeInForce", "GTC"), "type": params["type"], "side": params["side"],
                 "stopPrice": params.get("stopPrice", "0.00000000"), "icebergQty": "0.00000000", "time": now,
                 "updateTime": now, "isWorking": True, "workingTime": now, "origQuoteOrderQty": "0.00000000",
                 "selfTradePreventionMode": "EXPIRE_MAKER"}
        self.orders[order["orderId"]] = order
        return order

    def execution_report(self, order: dict, exec_type: str, last_qty: float = 0.0, last_price: float = 0.0,
                         trade_id: int = -1) -> dict:
        return {"e": "executionReport", "E": self.now(), "s": order["symbol"], "c": order["clientOrderId"],
                "S": order["side"], "o": order["type"], "f": order["timeInForce"], "q": order["origQty"],
                "p": order["price"], "P": order["stopPrice"], "F": "0.00000000", "g": -1, "C": "",
                "x": exec_type, "X": order["status"], "r": "NONE", "i": order["orderId"],
                "l": f"{last_qty:.8f}", "z": order["executedQty"], "L": f"{last_price:.8f}",
                "n": f"{last_qty * last_price * 0.001:.8f}" if trade_id >= 0 else "0", "N": "USDT" if trade_id >= 0 else None,
                "T": order["updateTime"], "t": trade_id, "I": 1, "w": order["status"] == "NEW", "m": False,
                "M": trade_id >= 0, "O": order["time"], "Z": order["cummulativeQuoteQty"],
                "Y": f"{last_qty * last_price:.8f}", "Q": "0.00000000", "W": order["workingTime"], "V": "EXPIRE_MAKER"}

    async def push_user(self, event: dict) -> None:
        for ws in list(self.user_sockets):
            await ws.send_str(json.dumps({"subscriptionId": 0, "event": event}))

    async def fill(self, cid: str, qty: float, price: float, push: bool = True) -> dict:
        order = self.by_client_id(cid)
        done = float(order["executedQty"]) + qty
        self.next_trade_id += 1
        now = self.now()
        order.update(executedQty=f"{done:.8f}",
                     cummulativeQuoteQty=f"{float(order['cummulativeQuoteQty']) + qty * price:.8f}",
                     status="FILLED" if done >= float(order["origQty"]) - 1e-12 else "PARTIALLY_FILLED",
                     updateTime=now)
        base, quote = SYMBOLS[order["symbol"]][:2]
        sign = 1 if order["side"] == "BUY" else -1
        self.balances[base] += sign * qty
        self.balances[quote] -= sign * qty * price
        self.trades.append({"symbol": order["symbol"], "id": self.next_trade_id, "orderId": order["orderId"],
                            "orderListId": -1, "price": f"{price:.8f}", "qty": f"{qty:.8f}",
                            "quoteQty": f"{qty * price:.8f}", "commission": f"{qty * price * 0.001:.8f}",
                            "commissionAsset": "USDT", "time": now, "isBuyer": order["side"] == "BUY",
                            "isMaker": False, "isBestMatch": True})
        if push:
            await self.push_user(self.execution_report(order, "TRADE", qty, price, self.next_trade_id))
        return order

    async def push_kline(self, symbol: str, start_ms: int, o, h, low, c, v, closed: bool, interval: str = "1m") -> None:
        if closed:  # a closed candle is part of the venue's history from now on
            rows = self.klines.setdefault(symbol, [])
            rows[:] = [r for r in rows if r[0] != start_ms] + [[start_ms, o, h, low, c, v]]
            rows.sort(key=lambda r: r[0])
        stream = f"{symbol.lower()}@kline_{interval}"
        message = {"e": "kline", "E": self.now(), "s": symbol, "k": {
            "t": start_ms, "T": start_ms + 59_999, "s": symbol, "i": interval, "f": 1, "L": 2, "o": f"{o:.2f}",
            "c": f"{c:.2f}", "h": f"{h:.2f}", "l": f"{low:.2f}", "v": f"{v:.4f}", "n": 2, "x": closed,
            "q": "0", "V": "0", "Q": "0", "B": "0"}}
        for ws, streams in list(self.kline_sockets.items()):
            if stream in streams:
                await ws.send_str(json.dumps(message))


def _sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def build_app(venue: BinanceVenue, server_ref: list) -> web.Application:
    routes = web.RouteTableDef()

    def error(status: int, code: int, msg: str) -> web.Response:
        return json_response({"code": code, "msg": msg}, status=status)

    async def signed(request: web.Request) -> tuple[dict | None, web.Response | None]:
        if request.headers.get("X-MBX-APIKEY") != venue.key:
            return None, error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        raw = request.query_string if request.method in ("GET", "DELETE") else await request.text()
        payload, _, signature = raw.rpartition("&signature=")
        if not hmac.compare_digest(_sign(venue.secret, payload), signature):
            return None, error(400, -1022, "Signature for this request is not valid.")
        return dict(parse_qsl(payload)), None

    def order_view(o: dict) -> dict:
        return dict(o)

    @routes.get("/api/v3/exchangeInfo")
    async def exchange_info(request):
        symbols = []
        for s, (base, quote, tick, step, min_qty, notional) in SYMBOLS.items():
            symbols.append({
                "symbol": s, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8, "quoteAsset": quote,
                "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS",
                                                              "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False, "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00", "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": "9000.00", "stepSize": step},
                    {"filterType": "NOTIONAL", "minNotional": notional, "applyMinToMarket": True,
                     "maxNotional": "9000000.00", "applyMaxToMarket": False, "avgPriceMins": 5},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.0", "stepSize": "0.00000000"}],
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]})
        return json_response({"timezone": "UTC", "serverTime": venue.now(), "rateLimits": [], "exchangeFilters": [],
                              "symbols": symbols})

    @routes.get("/api/v3/time")
    async def server_time(request):
        return json_response({"serverTime": venue.now()})

    @routes.post("/api/v3/order")
    async def new_order(request):
        params, fail = await signed(request)
        if fail:
            return fail
        venue.created.append(params.get("newClientOrderId"))
        if params["symbol"] not in SYMBOLS:
            return error(400, -1121, "Invalid symbol.")
        base, quote, tick, step, min_qty, notional = SYMBOLS[params["symbol"]]
        qty = float(params["quantity"])
        if abs(round(qty / float(step)) * float(step) - qty) > 1e-12 or qty < float(min_qty):
            return error(400, -1013, "Filter failure: LOT_SIZE")
        price = float(params.get("price") or venue.last[params["symbol"]])
        if "price" in params and abs(round(price / float(tick)) * float(tick) - price) > 1e-9:
            return error(400, -1013, "Filter failure: PRICE_FILTER")
        if qty * price < float(notional):
            return error(400, -1013, "Filter failure: NOTIONAL")
        if params.get("newClientOrderId") and venue.by_client_id(params["newClientOrderId"]):
            return error(400, -2010, "Duplicate order sent.")
        if params["side"] == "BUY" and qty * price > venue.balances[quote]:
            return error(400, -2010, "Account has insufficient balance for requested action.")
        order = venue.new_order(params)
        await venue.push_user(venue.execution_report(order, "NEW"))
        if venue.fill_price is not None and params["type"] == "MARKET":  # a liquid market: filled on arrival
            await venue.fill(order["clientOrderId"], qty, venue.fill_price(params["symbol"], order["clientOrderId"]))
        answer = {k: order[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId", "price", "origQty",
                                        "executedQty", "cummulativeQuoteQty", "status", "timeInForce", "type",
                                        "side", "workingTime", "selfTradePreventionMode")}
        answer.update(transactTime=order["time"], fills=[])
        return json_response(answer)

    @routes.get("/api/v3/order")
    async def get_order(request):
        params, fail = await signed(request)
        if fail:
            return fail
        cid = params.get("origClientOrderId")
        order = venue.by_client_id(cid) if cid else venue.orders.get(int(params.get("orderId", 0)))
        if order is None or order["symbol"] != params["symbol"]:
            return error(400, -2013, "Order does not exist.")
        return json_response(order_view(order))

    @routes.delete("/api/v3/order")
    async def cancel_order(request):
        params, fail = await signed(request)
        if fail:
            return fail
        order = venue.orders.get(int(params.get("orderId", 0))) or venue.by_client_id(params.get("origClientOrderId", ""))
        if order is None or order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return error(400, -2011, "Unknown order sent.")
        order.update(status="CANCELED", updateTime=venue.now())
        await venue.push_user(venue.execution_report(order, "CANCELED"))
        return json_response(order_view(order))

    @routes.get("/api/v3/openOrders")
    async def open_orders(request):
        params, fail = await signed(request)
        if fail:
            return fail
        return json_response([order_view(o) for o in venue.orders.values()
                              if o["status"] in ("NEW", "PARTIALLY_FILLED")
                              and params.get("symbol") in (None, o["symbol"])])

    @routes.get("/api/v3/myTrades")
    async def my_trades(request):
        params, fail = await signed(request)
        if fail:
            return fail
        start = int(params.get("startTime", 0))
        rows = [t for t in venue.trades if t["symbol"] == params["symbol"] and t["time"] >= start]
        return json_response(rows[: int(params.get("limit", 500))])

    @routes.get("/api/v3/account")
    async def account(request):
        params, fail = await signed(request)
        if fail:
            return fail
        locked = {a: 0.0 for a in venue.balances}
        return json_response({"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0,
                              "sellerCommission": 0, "canTrade": True, "canWithdraw": False, "canDeposit": False,
                              "brokered": False, "requireSelfTradePrevention": False, "preventSor": False,
                              "updateTime": venue.now(), "accountType": "SPOT", "permissions": ["SPOT"],
                              "uid": 1, "balances": [{"asset": a, "free": f"{v:.8f}", "locked": f"{locked[a]:.8f}"}
                                                     for a, v in venue.balances.items()]})

    @routes.get("/api/v3/ticker/24hr")
    async def tickers(request):
        wanted = json.loads(request.query["symbols"]) if "symbols" in request.query else list(SYMBOLS)
        return json_response([{"symbol": s, "priceChange": "0", "priceChangePercent": "0",
                               "weightedAvgPrice": f"{venue.last[s]}", "prevClosePrice": f"{venue.last[s]}",
                               "lastPrice": f"{venue.last[s]}", "lastQty": "1", "bidPrice": f"{venue.last[s]}",
                               "bidQty": "1", "askPrice": f"{venue.last[s]}", "askQty": "1",
                               "openPrice": f"{venue.last[s]}", "highPrice": f"{venue.last[s]}",
                               "lowPrice": f"{venue.last[s]}", "volume": "1", "quoteVolume": "1",
                               "openTime": 0, "closeTime": venue.now(), "firstId": 1, "lastId": 2, "count": 1}
                              for s in wanted])

    @routes.get("/api/v3/klines")
    async def klines(request):
        q = request.query
        rows = [r for r in venue.klines.get(q["symbol"], [])
                if r[0] >= int(q.get("startTime", 0)) and r[0] <= int(q.get("endTime", 2 ** 62))]
        return json_response([[r[0], f"{r[1]:.2f}", f"{r[2]:.2f}", f"{r[3]:.2f}", f"{r[4]:.2f}", f"{r[5]:.4f}",
                               r[0] + 59_999, "0", 2, "0", "0", "0"] for r in rows[: int(q.get("limit", 500))]])

    @routes.get("/ws-api/v3")
    async def ws_api(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        server_ref[0].sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if data.get("method") == "userDataStream.subscribe.signature":
                    params = dict(data["params"])
                    signature = params.pop("signature", "")
                    text = "&".join(f"{k}={params[k]}" for k in sorted(params))
                    if params.get("apiKey") != venue.key or not hmac.compare_digest(_sign(venue.secret, text), signature):
                        await ws.send_str(json.dumps({"id": data["id"], "status": 401, "error": {
                            "code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}}))
                        continue
                    await ws.send_str(json.dumps({"id": data["id"], "status": 200, "result": {"subscriptionId": 0}}))
                    venue.user_sockets.add(ws)
        finally:
            venue.user_sockets.discard(ws)
            server_ref[0].sockets.discard(ws)
        return ws

    @routes.get("/ws/{tail:.*}")
    async def market_ws(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        server_ref[0].sockets.add(ws)
        venue.kline_sockets[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if data.get("method") == "SUBSCRIBE":
                    venue.kline_sockets[ws].update(data["params"])
                    await ws.send_str(json.dumps({"result": None, "id": data["id"]}))
        finally:
            venue.kline_sockets.pop(ws, None)
            server_ref[0].sockets.discard(ws)
        return ws

    app = web.Application()
    app.add_routes(routes)
    return app


def start() -> tuple[FakeServer, BinanceVenue]:
    venue = BinanceVenue()
    ref: list = [None]
    server = FakeServer(build_app(venue, ref))
    ref[0] = server
    return server, venue


def run(server: FakeServer, coro):
    return asyncio.run_coroutine_threadsafe(coro, server.loop).result(5)


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the fake venue")
        time.sleep(0.02)
