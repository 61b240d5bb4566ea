"""Fake venues on 127.0.0.1 that speak the REST and websocket protocols of Alpaca, Binance (through ccxt)
and OANDA v20, so the adapters are tested through the real client libraries without the internet."""
