#!/usr/bin/env python3
"""Fetches IDs from one or more Floe servers and prints them, one per line, with their fields.

usage: get_ids.py [-n COUNT] [--http] [SERVER ...]

SERVER is host:port of the binary TCP listener (default 127.0.0.1:3778), or with --http the base
URL of the HTTP listener (default http://127.0.0.1:8880). With several servers the client fails
over between them. Install the client first: pip install ./clients/python
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Union

from floe_client import Client, FloeError, HttpClient, decode_genid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("servers", nargs="*", help="host:port (TCP) or http://host:port (--http)")
    parser.add_argument("-n", "--count", type=int, default=5, help="how many IDs (default 5)")
    parser.add_argument("--http", action="store_true", help="use the HTTP API instead of binary TCP")
    args = parser.parse_args()

    client: Union[Client, HttpClient]
    if args.http:
        client = HttpClient(args.servers or ["http://127.0.0.1:8880"])
    else:
        client = Client(args.servers or ["127.0.0.1:3778"])
    try:
        with client:
            ids = client.get_ids(args.count)
            for i in ids:
                f = decode_genid(i)  # fields of the default `genid` layout
                when = datetime.fromtimestamp(f.time, timezone.utc).isoformat()
                print(f"{i}\t{when} zone={f.zone} dc={f.dc} machine={f.machine} lane={f.lane} seq={f.seq}")
            print(f"# {len(ids)} IDs from {client.server}", file=sys.stderr)
    except FloeError as e:
        print(f"get_ids: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
