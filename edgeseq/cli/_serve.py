"""edgeseq serve: put a model on the network; many devices stream through one shared pool."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeseq.cli._options import only_with

__all__ = ["command"]

DEFAULT = click.core.ParameterSource.DEFAULT
DEPRECATED_MAX_WAIT = (
    "edgeseq serve: --max-wait-ms is deprecated and has no effect on the server (frames that "
    "arrive together are stepped in one batch, none waits for others); drop it."
)


@click.command("serve")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0: every one)."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="TCP port (0: any free port; the URL printed says which).",
)
@click.option(
    "--max-streams",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Streams held at once; more connections get HTTP 503.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Require 'Authorization: Bearer <token>'; one accepted token per line.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Save every stream here on shutdown, idle eviction and periodically; a restart with "
    "the same folder lets clients resume exactly.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds without frames before a stream leaves the pool (saved to --state-dir).",
)
@click.option(
    "--max-frames-per-message",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Frames one message may carry.",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="onnxruntime intra-op threads.",
)
@click.option(
    "--save-interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between saves of changed streams (bounds what a crash can lose; 0: off).",
)
@click.option(
    "--max-inflight",
    type=click.IntRange(1),
    default=16,
    show_default=True,
    help="Messages one connection may pipeline; also replies kept for re-delivery.",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Deprecated, no effect on the server (still accepted): frames that arrive together "
    "are stepped in one batch, and none is held back to wait for others.",
)
@click.option(
    "--device", default="cpu", show_default=True, help="cpu, cuda, or an onnxruntime provider name."
)
@click.option(
    "--ray",
    "use_ray",
    is_flag=True,
    help="Serve from Ray Serve replicas (the same protocol on --port); without --ray-address "
    "a local Ray cluster is started here and stopped on exit (docs/scale-out.md).",
)
@click.option(
    "--replicas",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="With --ray: replicas, each a process with its own pool.",
)
@click.option(
    "--ray-address",
    default=None,
    help="With --ray: join this cluster ('auto' or HOST:PORT) instead of starting one; needs a "
    "--state-dir every node mounts.",
)
@click.option(
    "--replica-cpus",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="With --ray: CPUs Ray reserves per replica (fractions allowed).",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=1),
    default=5.0,
    show_default=True,
    help="With --ray: a replica silent this long is presumed dead; its streams resume on "
    "another replica from their last save.",
)
def command(
    model: str,
    host: str,
    port: int,
    max_streams: int,
    token_file: Path | None,
    state_dir: Path | None,
    idle_timeout: float,
    max_frames_per_message: int,
    threads: int,
    save_interval: float,
    max_inflight: int,
    max_wait_ms: float,
    device: str,
    use_ray: bool,
    replicas: int,
    ray_address: str | None,
    replica_cpus: float,
    lease_seconds: float,
) -> None:
    """Serve MODEL over WebSocket: one connection is one stream, all share one batched pool.

    Prints the URL it listens on, then one line per connection event. Clients send binary
    frames (T × F little-endian values) and get JSON outputs; the protocol is in
    docs/protocol.md. The same port answers GET /healthz, /v1/model (the contract),
    /metrics (Prometheus) and / (a page: drop a CSV of frames, watch the outputs plot).
    SIGTERM or Ctrl-C finishes in-flight work, saves every stream to --state-dir and exits
    0; clients resume exactly after a restart with the same folder.

    With --ray the same endpoints are served by Ray Serve replicas (--max-streams and the
    other limits apply per replica): each stream is owned by one replica at a time, saved
    to --state-dir, and resumes on another replica when its replica stops or dies; the
    client is told the frame it resumed from and resends the rest. /metrics covers every
    replica and /v1/replicas lists them.

    \b
    Examples:
      edgeseq serve model.onnx --state-dir state/
      edgeseq serve model.onnx --host 0.0.0.0 --token-file tokens.txt --max-streams 1024
      edgeseq stream --url ws://127.0.0.1:8765 -i frames.csv     # a client
      edgeseq serve model.onnx --ray --replicas 2                # a local Ray cluster
      edgeseq serve model.onnx --ray --ray-address auto --replicas 8 --state-dir /mnt/shared/s
    """
    from edgeseq.serve import ServeOptions, Server, load_tokens

    if click.get_current_context().get_parameter_source("max_wait_ms") is not DEFAULT:
        click.echo(DEPRECATED_MAX_WAIT, err=True)
    options = ServeOptions(
        host=host,
        port=port,
        max_streams=max_streams,
        tokens=load_tokens(token_file) if token_file is not None else (),
        state_dir=state_dir,
        idle_timeout=idle_timeout,
        max_frames_per_message=max_frames_per_message,
        threads=threads,
        max_inflight=max_inflight,
        save_interval=save_interval,
        max_wait_ms=max_wait_ms,
        device=device,
    )
    if not use_ray:
        only_with("--ray", ["ray_address", "replicas", "replica_cpus", "lease_seconds"])
        sys.exit(Server(model, options).run())
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not imported: Ray reads settings on import
        raise click.ClickException(
            "--ray needs Ray Serve, which is not installed: pip install 'edgeseq[ray]'."
        )
    from edgeseq.serve import RayFleet, RayOptions

    fleet = RayFleet(
        model,
        options,
        RayOptions(
            replicas=replicas,
            address=ray_address,
            replica_cpus=replica_cpus,
            lease_seconds=lease_seconds,
        ),
    )
    sys.exit(fleet.run())
