"""``imori serve``: a checkpoint behind an HTTP prediction endpoint (``cli.endpoint_app``)."""

from __future__ import annotations

import argparse
import os
import sys

from core.errors import ImoriError

DEFAULT_PORT = 8700


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over HTTP: POST /predict with images, the answers of "
                                     "imori predict --json")
    p.add_argument("checkpoint", nargs="?", help="an imori checkpoint (or give --run)")
    p.add_argument("--run", type=int, metavar="RUN", help="a recorded run: its default checkpoint, as imori predict --run")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--top-k", dest="top_k", type=int, default=3, help="classes listed under 'top' (default 3)")
    p.add_argument("--min-confidence", dest="min_confidence", type=float, default=0.0, metavar="P",
                   help="answer 'not sure' below P, as imori predict does (default 0: always answer)")
    p.add_argument("--max-mb", dest="max_mb", type=float, default=20.0,
                   help="the largest request taken, in MB (default 20); a larger one gets 413")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the checkpoint, then serve until Ctrl-C or SIGTERM (uvicorn's own handling)."""
    if (args.checkpoint is None) == (args.run is None):
        raise ImoriError("give a checkpoint file or --run RUN (one of them)")
    if args.max_mb <= 0:
        raise ImoriError(f"--max-mb must be above 0, not {args.max_mb:g}")
    import uvicorn  # the web stack and torch load only for this command

    from cli.endpoint_app import TOKEN_VARIABLE, build_app, checkpoint_facts
    from cli.train import predictor_from_args

    args.model = args.classes = args.kernel = None  # predictor_from_args's bare state_dict options: not served
    predictor = predictor_from_args(args)
    facts = checkpoint_facts(predictor, str(args.checkpoint), args.run)
    token = os.environ.get(TOKEN_VARIABLE) or None
    app = build_app(predictor, facts, token=token, max_bytes=int(args.max_mb * 1024 * 1024), top_k=args.top_k)
    print(f"serving {facts['model']} ({args.checkpoint}) at http://{args.host}:{args.port}: POST /predict, the API at "
          f"/{', a bearer token required' if token else ''} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except SystemExit as exit_:  # uvicorn exits 1 when it cannot bind: say why in one line
        if exit_.code:
            raise ImoriError(f"cannot serve on {args.host}:{args.port} (in use, or not this machine's address): "
                             "choose another with --port or --host") from None
    return 0
