"""Write the USDJPY minute bid/ask files the FX example runs on.

The source is FXCM's one-minute bid and ask bars of February 2013 in the shared data folder
(``../../../shared/data/fxcm-usdjpy-m1-{bid,ask}-2013.csv``). 683 of its 28,761 minutes have the
bid close above the ask close (crossed quotes), which backforge refuses to simulate on. This script
drops those minutes from both files with the data layer's quality policy ``"drop"`` and writes the
rest unchanged, gzip-compressed, next to this script::

    python examples/data/make_usdjpy.py

(``backforge run`` reads the data spec's files with the default policy, which rejects crossed quotes;
once the spec accepts a quality policy the example can point at the shared files directly.)
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("BACKFORGE_SHARED_DATA", HERE.parents[2] / "shared" / "data"))


def main() -> None:
    import polars as pl

    from backforge.data.importers import read_bid_ask
    from backforge.data.quality import apply_policy

    fd = read_bid_ask(SHARED / "fxcm-usdjpy-m1-bid-2013.csv", SHARED / "fxcm-usdjpy-m1-ask-2013.csv")
    clean, report = apply_policy(fd, policy="drop")
    print(report.summary())
    stamp = pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
    for side in ("bid", "ask"):
        frame = clean.select(stamp.alias("timestamp"), *(pl.col(f"{side}_{f}").alias(f) for f in ("open", "high", "low", "close")))
        target = HERE / f"usdjpy-m1-2013-02-{side}.csv.gz"
        with gzip.GzipFile(target, "wb", mtime=0) as fh:  # mtime=0: byte-identical output on every run
            frame.write_csv(fh)
        print(f"wrote {target.name}: {frame.height} rows")


if __name__ == "__main__":
    main()
