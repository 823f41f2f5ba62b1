"""python -m qmonit.dev.simulator: serve a simulated PanDA, CRIC and MONIT until SIGTERM."""
import logging
import threading

from .sim import Simulator
from .world import _utc

log = logging.getLogger("qmonit.dev.simulator")


def main(argv=None):
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m qmonit.dev.simulator",
        description="Serve simulated PanDA job statistics and CRIC data over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--series", type=int, default=25000,
                        help="approximate number of series in the PanDA reply")
    parser.add_argument("--time", help='fixed simulated UTC time "YYYY-mm-dd HH:MM:SS"')
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--tls-cert", metavar="PEM",
                        help="serve HTTPS with this certificate (and chain; the key too unless "
                             "--tls-key)")
    parser.add_argument("--tls-key", metavar="PEM")
    parser.add_argument("--tls-client-ca", metavar="PEM",
                        help="with --tls-cert: require client certificates from this CA")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        when = _utc(args.time) if args.time else None
    except ValueError as exc:
        parser.error(f"--time: {exc}")
    if (args.tls_key or args.tls_client_ca) and not args.tls_cert:
        parser.error("--tls-key and --tls-client-ca need --tls-cert")
    tls = {"cert": args.tls_cert, "key": args.tls_key,
           "client_ca": args.tls_client_ca} if args.tls_cert else None
    sim = Simulator(seed=args.seed, series=args.series, time=when,
                    hang_seconds=args.hang_seconds, tls=tls)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        url = sim.start(args.host, args.port)
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(url, flush=True)
    while not done.wait(0.5):
        pass
    sim.stop()
    log.info("simulator stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
