"""Where stage outputs live: a local directory (``pathlib.Path``) or an object store prefix (``s3://``).

The shard writer, its commit records and the manifests are written against a small ``pathlib``-like surface
(``/``, ``name``, ``parent``, ``is_file``, ``stat().st_size``, ``glob``, ``unlink``, ``read_text``, ...).
Local paths stay plain ``Path`` objects, so local behaviour and bytes are unchanged; ``s3://`` URIs become
``ObjectPath`` objects backed by pyarrow's ``S3FileSystem``.

Object stores have no rename: a write there goes to a temporary key beside the final one, is copied to the
final key (a server-side copy: the final key appears whole or not at all) and the temporary key is deleted.
Readers trust only what a commit record or a manifest lists, and a stale temporary key is never listed.

Endpoint and region come from ``config.storage`` (set once per process with ``configure``) or the standard
AWS environment variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``); credentials always come from the AWS
credential chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, profiles, instance roles), never from
a config file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.fs as pafs

OBJECT_SCHEMES = ("s3://",)
TMP_PREFIX = ".tmp-"  # the names writes go to before they are promoted: never output, never listed


@dataclass(frozen=True)
class S3Options:
    """What selects an S3 endpoint; ``None`` leaves the choice to the AWS environment variables."""

    endpoint_url: str | None = None
    region: str | None = None


_default_options = S3Options()


class S3Settings(Protocol):
    """What this module reads of ``laioncele.config.StorageConfig``; named here so storage imports no config."""

    endpoint_url: str | None
    region: str | None


def configure(storage: S3Settings | None) -> None:
    """Make ``storage`` the endpoint/region of every ``s3://`` URI this process resolves from a string."""
    global _default_options
    if storage is not None:
        _default_options = S3Options(storage.endpoint_url, storage.region)


def _endpoint_and_region(options: S3Options) -> tuple[str | None, str | None]:
    """The endpoint URL and region ``options`` select, falling back to the standard AWS variables."""
    endpoint = (
        options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    region = options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return endpoint, region


@functools.lru_cache(maxsize=8)
def s3_filesystem(options: S3Options) -> pafs.S3FileSystem:
    """One S3 filesystem per endpoint; keys come from the AWS credential chain."""
    kwargs: dict[str, Any] = {}
    endpoint, region = _endpoint_and_region(options)
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        kwargs["endpoint_override"] = host or endpoint
        if scheme:
            kwargs["scheme"] = scheme
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def polars_storage_options(path: Path | ObjectPath) -> dict[str, str] | None:
    """``storage_options`` for Polars' own object-store reader (``pl.scan_ipc``) at ``path``'s endpoint: the
    same endpoint and region as the pyarrow filesystem; keys from the AWS environment. ``None`` for local paths.
    """
    if not isinstance(path, ObjectPath):
        return None
    endpoint, region = _endpoint_and_region(path.options)
    options: dict[str, str] = {}
    if endpoint:
        options["aws_endpoint_url"] = endpoint
        if endpoint.startswith("http://"):
            options["aws_allow_http"] = "true"
    if region:
        options["aws_region"] = region
    return options


def is_object_uri(path: Any) -> bool:
    return isinstance(path, ObjectPath) or (isinstance(path, str) and path.startswith(OBJECT_SCHEMES))


def as_path(
    path: str | os.PathLike[str] | ObjectPath, storage: S3Settings | None = None
) -> Path | ObjectPath:
    """A local ``Path``, or an ``ObjectPath`` for ``s3://`` URIs (endpoint from ``storage`` or the default)."""
    if isinstance(path, ObjectPath):
        return path
    if isinstance(path, str) and path.startswith(OBJECT_SCHEMES):
        options = S3Options(storage.endpoint_url, storage.region) if storage is not None else _default_options
        return ObjectPath(s3_filesystem(options), path.removeprefix("s3://").strip("/"), options)
    return Path(path)


def filesystem_from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """``pyarrow.fs.FileSystem.from_uri``, but ``s3://`` URIs get this process's configured endpoint."""
    if uri.startswith(OBJECT_SCHEMES):
        path = as_path(uri)
        assert isinstance(path, ObjectPath)
        return path.fs, path.key
    return pafs.FileSystem.from_uri(uri)


@dataclass(frozen=True)
class _Stat:
    st_size: int


class ObjectPath:
    """A key (or key prefix) in an object store, with the subset of ``pathlib.Path`` the pipeline uses.

    Directories are implicit prefixes: ``mkdir`` does nothing, ``is_dir`` is true once a key lies below.
    Picklable (the pyarrow filesystem pickles with its endpoint), so it can travel to Ray workers.
    """

    def __init__(self, fs: pafs.FileSystem, key: str, options: S3Options | None = None) -> None:
        self.fs = fs
        self.key = key.strip("/")
        self.options = options or S3Options()  # what selected ``fs`` (for readers other than pyarrow)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ObjectPath, (self.fs, self.key, self.options))

    def _at(self, key: str) -> ObjectPath:
        return ObjectPath(self.fs, key, self.options)

    def __str__(self) -> str:
        return f"s3://{self.key}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.key == self.key

    def __hash__(self) -> int:
        return hash(("s3", self.key))

    def __lt__(self, other: ObjectPath) -> bool:
        return self.key < other.key

    def __truediv__(self, part: str | os.PathLike[str]) -> ObjectPath:
        return self._at(f"{self.key}/{os.fspath(part).strip('/')}")

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def parent(self) -> ObjectPath:
        return self._at(str(PurePosixPath(self.key).parent))

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def resolve(self) -> ObjectPath:
        return self

    def is_absolute(self) -> bool:
        return True

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        return PurePosixPath(self.key).relative_to(other.key)

    def _info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.key)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def stat(self) -> _Stat:
        info = self._info()
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(str(self))
        return _Stat(int(info.size))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Prefixes need no creating; writing a key below one is enough."""

    def iterdir(self) -> list[ObjectPath]:
        selector = pafs.FileSelector(self.key, recursive=False, allow_not_found=True)
        return [self._at(info.path) for info in self.fs.get_file_info(selector)]

    def glob(self, pattern: str) -> list[ObjectPath]:
        """Direct children whose name matches ``pattern`` (no ``**``, no ``/``: all the pipeline needs)."""
        if "/" in pattern:
            raise ValueError(f"ObjectPath.glob supports one path level, got {pattern!r}")
        return sorted(p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError:
            if not missing_ok or self.exists():
                raise

    def read_bytes(self) -> bytes:
        try:
            with self.fs.open_input_stream(self.key) as stream:
                return stream.read()
        except OSError as exc:
            if not self.exists():
                raise FileNotFoundError(str(self)) from exc
            raise

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """One PUT (not atomic across a crash: use ``atomic_write_bytes`` for anything a reader trusts)."""
        with self.fs.open_output_stream(self.key) as stream:
            stream.write(data)


def temp_name(final: Path | ObjectPath) -> str:
    """The name, beside ``final``, that a write goes to before it is promoted; readers never list it."""
    return f"{TMP_PREFIX}{final.name}.{os.getpid()}"


def promote(tmp: Path | ObjectPath, final: Path | ObjectPath) -> None:
    """Make a fully written ``tmp`` visible as ``final`` at once: a rename locally; on an object store (no
    rename) a server-side copy (the final key appears whole or not at all), then the temp key is deleted."""
    if isinstance(tmp, ObjectPath) and isinstance(final, ObjectPath):
        final.fs.copy_file(tmp.key, final.key)
        tmp.unlink(missing_ok=True)
    else:
        os.replace(tmp, final)


def temp_key_write(final: ObjectPath, data: bytes, tmp_name: str) -> None:
    """All-or-nothing on an object store: upload under ``tmp_name`` beside ``final``, copy, delete the temp."""
    tmp = final.with_name(tmp_name)
    tmp.write_bytes(data)
    promote(tmp, final)


@contextlib.contextmanager
def atomic_output(path: str | Path | ObjectPath) -> Iterator[pa.NativeFile]:
    """A pyarrow output stream whose bytes appear at ``path`` all at once when the block ends: written under
    a temp name beside it (fsynced locally), then promoted (``promote``). An error, or a kill, leaves only the
    temp name, which nothing lists as output; an error also removes it."""
    final = as_path(path)
    tmp = final.with_name(temp_name(final))
    if isinstance(final, Path):
        final.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open_output(tmp) as sink:
            yield sink
        if isinstance(tmp, Path):
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        promote(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_output(path: Path | ObjectPath) -> pa.NativeFile:
    """A pyarrow output stream at ``path`` (local: ``pa.OSFile``)."""
    if isinstance(path, ObjectPath):
        return path.fs.open_output_stream(path.key)
    return pa.OSFile(str(path), "wb")


def open_input(path: Path | ObjectPath) -> pa.NativeFile:
    """A random-access pyarrow input file at ``path`` (local: memory-mapped)."""
    if isinstance(path, ObjectPath):
        return path.fs.open_input_file(path.key)
    return pa.memory_map(str(path))


def copy_file(src: Path | ObjectPath, dst: Path | ObjectPath) -> None:
    """Copy one file all-or-nothing: within one object store a server-side copy; otherwise through a temp name
    (``atomic_output``), local files in 1 MiB blocks, object keys through memory (small side files)."""
    if isinstance(src, ObjectPath) and isinstance(dst, ObjectPath) and src.fs is dst.fs:
        src.fs.copy_file(src.key, dst.key)
        return
    with atomic_output(dst) as sink:
        if isinstance(src, ObjectPath):
            sink.write(src.read_bytes())
        else:
            with open(src, "rb") as handle:
                shutil.copyfileobj(handle, sink, 1 << 20)
