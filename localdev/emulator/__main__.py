"""Run the Cronofy emulator standalone: ``python -m localdev.emulator --port 8765``."""

from __future__ import annotations

import argparse
import json
import threading

from .emulator import CronofyEmulator
from .seed import seed_demo


def _rate_limit(value: str) -> tuple[int, int]:
    try:
        per_second, per_minute = (int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("use PER_SECOND,PER_MINUTE, e.g. 50,500") from None
    return per_second, per_minute


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localdev.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client-id", default="local-client")
    parser.add_argument("--client-secret", default="local-secret")
    parser.add_argument("--access-token-ttl", type=int, default=3600)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--no-rotate-refresh-tokens", action="store_true")
    parser.add_argument("--rate-limit", type=_rate_limit, default=None, metavar="PER_SECOND,PER_MINUTE")
    parser.add_argument("--seed-demo", action="store_true", help="seed demo calendar accounts and events")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--kind", action="store_true",
                        help="realism off: synchronous writes, one push attempt, no duplicates (see README)")
    args = parser.parse_args(argv)

    emu = CronofyEmulator(
        client_id=args.client_id,
        client_secret=args.client_secret,
        host=args.host,
        port=args.port,
        access_token_ttl=args.access_token_ttl,
        page_size=args.page_size,
        rotate_refresh_tokens=not args.no_rotate_refresh_tokens,
        rate_limit=args.rate_limit,
        verbose=args.verbose,
        realism=False if args.kind else None,
    ).start()
    # Seeded before the "listening" line: a caller that waits for it finds the demo accounts there.
    accounts = seed_demo(emu) if args.seed_demo else []
    print(f"Cronofy emulator listening on {emu.base_url}", flush=True)
    for account in accounts:
        print(
            json.dumps({k: account[k] for k in ("provider_name", "profile_id", "profile_name")}),
            flush=True,
        )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
