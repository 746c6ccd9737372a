"""A local S3-compatible server for the object-store build: moto's server mode on 127.0.0.1.

``python -m infra.local_s3`` starts it on a free port (or ``--port``), creates the sample's bucket, uploads
``sample/metadata.parquet`` to it and prints the environment and the command of a build against it::

    python -m infra.local_s3 &      # prints: export AWS_ACCESS_KEY_ID=... ; make build-dataset ... SET=...
    make build-dataset CONFIG=configs/sample-s3.yaml SET="storage.endpoint_url=http://127.0.0.1:<port>"

The keys are moto's throwaway test keys (moto accepts any); real stores take them from the AWS credential chain.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import pyarrow.fs as pafs

REPO = Path(__file__).resolve().parents[1]
SAMPLE_BUCKET = "laioncele-sample"
SAMPLE_INPUT_KEY = "input/metadata.parquet"
# moto checks no signature: any non-empty pair works. Never real credentials.
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "moto-local",
    "AWS_SECRET_ACCESS_KEY": "moto-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto(port: int = 0):
    """A started ``ThreadedMotoServer`` on 127.0.0.1 (``port`` 0: the OS picks) and its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    return server, f"http://{host}:{bound}"


def seed_sample(endpoint: str, bucket: str = SAMPLE_BUCKET) -> str:
    """Create ``bucket`` and upload the sample metadata; returns its ``s3://`` URI."""
    host = endpoint.split("://", 1)[1]
    fs = pafs.S3FileSystem(
        endpoint_override=host,
        scheme=endpoint.split("://", 1)[0],
        region=MOTO_ENV["AWS_DEFAULT_REGION"],
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", MOTO_ENV["AWS_ACCESS_KEY_ID"]),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", MOTO_ENV["AWS_SECRET_ACCESS_KEY"]),
        allow_bucket_creation=True,
    )
    fs.create_dir(bucket)
    with fs.open_output_stream(f"{bucket}/{SAMPLE_INPUT_KEY}") as out:
        out.write((REPO / "sample" / "metadata.parquet").read_bytes())
    return f"s3://{bucket}/{SAMPLE_INPUT_KEY}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local_s3", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    for key, value in MOTO_ENV.items():
        os.environ.setdefault(key, value)
    server, endpoint = start_moto(args.port)
    uri = seed_sample(endpoint)
    print(" ".join(f"export {k}={v};" for k, v in MOTO_ENV.items()))
    print(f"# {uri} uploaded; build with:")
    print(
        f'make build-dataset CONFIG=configs/sample-s3.yaml SET="storage.endpoint_url={endpoint}"', flush=True
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
