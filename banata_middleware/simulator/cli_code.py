"""``banata-mfa code '<otpauth-uri>' [--at UNIX_SECONDS] [--skew SECONDS]``: print a TOTP code.

The same engine as :class:`~banata_middleware.simulator.VirtualAuthenticator`, for a human at
a terminal or a shell script driving a demo. Exit status 0 with the code on stdout, 2 with a
message on stderr for a bad URI or argument.
"""

from __future__ import annotations

import argparse
import sys

from banata_middleware.clock import SYSTEM_CLOCK, Clock

from .authenticator import VirtualAuthenticator
from .clocks import FrozenClock, OffsetClock

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``code`` subcommand's arguments on ``parser`` (for the main CLI's subparser)."""
    parser.add_argument("uri", help="an otpauth://totp/ URI, as encoded in the enrolment QR code")
    parser.add_argument(
        "--at",
        type=float,
        metavar="UNIX_SECONDS",
        help="the instant to compute the code for (default: now)",
    )
    parser.add_argument(
        "--skew",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pretend the device clock is off by this much (negative: behind)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the code for parsed ``args``; returns the exit status."""
    base: Clock = SYSTEM_CLOCK if args.at is None else FrozenClock(args.at)
    try:
        app = VirtualAuthenticator.from_uri(args.uri, clock=OffsetClock(base, args.skew))
        code = app.code()
    except ValueError as exc:
        print(f"banata-mfa code: error: {exc}", file=sys.stderr)
        return 2
    print(code)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` are the arguments after ``code`` (default: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        prog="banata-mfa code",
        description="Print the TOTP code (RFC 6238) an authenticator app would show.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
