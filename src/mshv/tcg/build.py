"""Building the software engine's library: unicorn 2.1.4 with our patch set.

The PyPI source distribution (pinned by sha256) is fetched through the package
index pip is configured with, patched with `patches/*.patch` in name order,
configured for x86 only and built with cmake + ninja. The finished
`libunicorn.so.2` is cached under a key over the sdist's hash, the bytes of
every patch and the cmake flags, so an unchanged patch set never rebuilds.

Cache: $MSHV_UNICORN_CACHE, else $XDG_CACHE_HOME/mshv/unicorn (~/.cache/...).
A machine without network access can be given the sdist by placing it in
the cache directory; it is verified like a download.

Standard library only: setup.py loads this file by path before the package
is installed. By hand: `python -m mshv.tcg.build [--force]`.
"""

from __future__ import annotations

import argparse
import base64
import configparser
import contextlib
import fcntl
import hashlib
import html
import json
import os
import pathlib
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence

PROJECT = "unicorn"
VERSION = "2.1.4"
SDIST_NAME = f"unicorn-{VERSION}.tar.gz"
SDIST_SHA256 = "00567a70e323f749b419cd86bee4f9115beab7ebba32194581c090cbb7c59cff"
LIBRARY_NAME = "libunicorn.so.2"
CMAKE_FLAGS = (
    "-DUNICORN_ARCH=x86",
    "-DUNICORN_BUILD_TESTS=off",
    "-DCMAKE_BUILD_TYPE=Release",
)
CMAKE_MIN = (3, 13)  # -S/-B; unicorn itself asks for 3.5
RECIPE = 1  # bump when this file changes how the library is built
KEEP_BUILDS = 6  # cached libraries kept, most recently used first

HERE = pathlib.Path(__file__).resolve().parent
PATCH_DIR = HERE / "patches"
PACKAGE_LIB_DIR = HERE / "_lib"
DEFAULT_INDEX = "https://pypi.org/simple"

_GET_TOOLS = (
    "On Debian: apt-get install cmake ninja-build build-essential. cmake and ninja also "
    "come from PyPI (pip install cmake ninja; the package's install fetches them itself "
    "when they are missing); the C compiler and patch do not."
)


class BuildError(RuntimeError):
    """The library could not be fetched, verified, patched or built."""


def cache_dir() -> pathlib.Path:
    """Where sdists and finished libraries are kept."""
    override = os.environ.get("MSHV_UNICORN_CACHE")
    if override:
        return pathlib.Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(xdg) / "mshv" / "unicorn"


def patch_files(patch_dir: pathlib.Path = PATCH_DIR) -> list[pathlib.Path]:
    """The patch set, in the order it is applied."""
    return sorted(patch_dir.glob("*.patch"), key=lambda p: p.name)


def cache_key(
    patches: Sequence[pathlib.Path],
    *,
    sdist_sha256: str = SDIST_SHA256,
    cmake_flags: Sequence[str] = CMAKE_FLAGS,
) -> str:
    """A digest over everything that decides the library's bytes."""
    h = hashlib.sha256(f"mshv-unicorn recipe {RECIPE}\nsdist {sdist_sha256}\n".encode())
    for flag in cmake_flags:
        h.update(f"flag {flag}\n".encode())
    for p in patches:
        data = p.read_bytes()
        h.update(f"patch {p.name} {len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()[:32]


def cached_library(key: str, cache: pathlib.Path | None = None) -> pathlib.Path:
    """Where the library of `key` lies once built (it may not exist yet)."""
    return (cache or cache_dir()) / "lib" / key / LIBRARY_NAME


# --- tools --------------------------------------------------------------------------------


def _cmake_version(cmake: str) -> tuple[int, ...]:
    out = subprocess.run([cmake, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0,)


def find_cmake() -> str | None:
    cmake = shutil.which("cmake")
    return cmake if cmake and _cmake_version(cmake) >= CMAKE_MIN else None


def find_ninja() -> str | None:
    return shutil.which("ninja") or shutil.which("ninja-build")


def find_compiler() -> str | None:
    cc = os.environ.get("CC", "").split()
    if cc:
        return shutil.which(cc[0])
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def pypi_build_requirements() -> list[str]:
    """What an isolated build must install from PyPI: nothing when the library is
    cached, else cmake and ninja where the machine lacks them."""
    if cached_library(cache_key(patch_files())).exists():
        return []
    need = [] if find_cmake() else [f"cmake>={CMAKE_MIN[0]}.{CMAKE_MIN[1]}"]
    return need + ([] if find_ninja() else ["ninja"])


def check_tools() -> dict[str, str]:
    """The paths of cmake, ninja, the C compiler and patch; all missing ones named."""
    found = {
        "cmake": find_cmake(),
        "ninja": find_ninja(),
        "cc": find_compiler(),
        "patch": shutil.which("patch"),
    }
    missing = {
        "cmake": "cmake >= {}.{}".format(*CMAKE_MIN),
        "ninja": "ninja",
        "cc": f"a C compiler ({os.environ.get('CC') or 'cc, gcc or clang'})",
        "patch": "patch",
    }
    absent = [missing[k] for k, v in found.items() if v is None]
    if absent:
        raise BuildError(f"building unicorn needs {', '.join(absent)} on PATH. {_GET_TOOLS}")
    return {k: v for k, v in found.items() if v is not None}


# --- the sdist ----------------------------------------------------------------------------


def verify_sdist(path: pathlib.Path, sha256: str = SDIST_SHA256) -> None:
    """Refuse a file whose sha256 is not the pinned one."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != sha256:
        raise BuildError(
            f"{path} has sha256 {h.hexdigest()}, expected {sha256} ({SDIST_NAME} from PyPI); "
            "refusing to build from it. Delete the file to fetch it again."
        )


def _pip_settings() -> dict[str, str]:
    """index-url, extra-index-url and cert as pip reads them (files, then PIP_*)."""
    cfg = configparser.RawConfigParser()
    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file != os.devnull:
        home = pathlib.Path.home()
        xdg_dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
        files = [pathlib.Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(":") if d]
        files.append(pathlib.Path("/etc/pip.conf"))
        if not (env_file and os.path.exists(env_file)):  # pip skips user files then
            user = pathlib.Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
            files += [home / ".pip" / "pip.conf", user / "pip" / "pip.conf"]
        files.append(pathlib.Path(sys.prefix) / "pip.conf")
        try:
            cfg.read([*files, *([env_file] if env_file else [])])
        except configparser.Error as e:
            raise BuildError(f"cannot read pip's configuration: {e}") from e
    settings: dict[str, str] = {}
    for section in ("global", "install", "download"):
        if cfg.has_section(section):
            settings.update({k.replace("_", "-"): v for k, v in cfg.items(section)})
    for name in ("index-url", "extra-index-url", "cert"):
        value = os.environ.get("PIP_" + name.replace("-", "_").upper())
        if value:
            settings[name] = value
    return settings


def _request(url: str, accept: str = "*/*") -> urllib.request.Request:
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": accept, "User-Agent": "mshv-build"}
    if parts.username is not None:  # credentials in the index URL, as pip allows
        user, password = (urllib.parse.unquote(x or "") for x in (parts.username, parts.password))
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
        host = parts.hostname or ""
        url = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host).geturl()
    if parts.scheme == "file" and pathlib.Path(urllib.request.url2pathname(parts.path)).is_dir():
        url = url.rstrip("/") + "/index.html"  # a local simple index, as a directory tree
    return urllib.request.Request(url, headers=headers)


def _sdist_url(index: str, context: ssl.SSLContext) -> str | None:
    """The sdist's URL on one simple index (PEP 691 JSON or PEP 503 HTML)."""
    page = index.rstrip("/") + f"/{PROJECT}/"
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    with urllib.request.urlopen(_request(page, accept), timeout=60, context=context) as r:
        body = r.read()
        kind = r.headers.get("Content-Type", "")
    if "json" in kind:
        data = json.loads(body)
        files = data.get("files", []) if isinstance(data, dict) else []
        urls = [str(f.get("url", "")) for f in files if isinstance(f, dict)]
    else:
        hrefs = re.findall(r"""<a\s[^>]*href=["']([^"']+)["']""", body.decode("utf-8", "replace"))
        urls = [html.unescape(h) for h in hrefs]
    for u in urls:
        full = urllib.parse.urljoin(page, u)
        if urllib.parse.urlsplit(full).path.rsplit("/", 1)[-1] == SDIST_NAME:
            return urllib.parse.urldefrag(full).url
    return None


def fetch_sdist(cache: pathlib.Path | None = None) -> pathlib.Path:
    """The verified sdist in the cache, downloaded through pip's index if absent."""
    dest = (cache or cache_dir()) / SDIST_NAME
    if dest.exists():
        verify_sdist(dest)
        return dest
    settings = _pip_settings()
    context = ssl.create_default_context(cafile=settings.get("cert"))
    indexes = [
        settings.get("index-url", DEFAULT_INDEX),
        *settings.get("extra-index-url", "").split(),
    ]
    problems: list[str] = []
    for index in indexes:
        try:
            url = _sdist_url(index, context)
        except (OSError, ValueError) as e:
            problems.append(f"{index}: {e}")
            continue
        if url is None:
            problems.append(f"{index}: no {SDIST_NAME}")
            continue
        _say(f"fetching {url}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{SDIST_NAME}.{os.getpid()}")
        try:
            request = _request(url)
            with (
                urllib.request.urlopen(request, timeout=60, context=context) as r,
                tmp.open("wb") as f,
            ):
                shutil.copyfileobj(r, f)
            verify_sdist(tmp)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise BuildError(f"downloading {url} failed: {e}") from e
        except BuildError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)
        return dest
    raise BuildError(
        f"cannot fetch {SDIST_NAME}: {'; '.join(problems)}. Without network access, place "
        f"the file (sha256 {SDIST_SHA256}) at {dest}"
    )


def _extract(sdist: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    with tarfile.open(sdist) as tar:
        members = tar.getmembers()
        for m in members:  # files and directories inside `into` only (no data_filter < 3.11.4)
            parts = pathlib.PurePosixPath(m.name).parts
            if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in parts:
                raise BuildError(f"{sdist}: unexpected member {m.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, members=members, filter="data")
        else:
            tar.extractall(into, members=members)
    src = into / f"unicorn-{VERSION}" / "src"
    if not (src / "CMakeLists.txt").exists():
        raise BuildError(f"{sdist} has no unicorn-{VERSION}/src/CMakeLists.txt")
    return src


# --- the build ----------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(f"mshv.tcg.build: {msg}", file=sys.stderr, flush=True)


def _run(cmd: Sequence[str], cwd: pathlib.Path, log: pathlib.Path) -> None:
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise BuildError(f"`{' '.join(cmd)}` failed (exit {rc}); log {log}:\n{tail}")


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prune(lib_root: pathlib.Path, keep: int) -> None:
    dirs = sorted((d for d in lib_root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    for d in dirs[:-keep]:
        shutil.rmtree(d, ignore_errors=True)


def build_library(
    *,
    force: bool = False,
    cache: pathlib.Path | None = None,
    patch_dir: pathlib.Path = PATCH_DIR,
) -> pathlib.Path:
    """The path of the patched library in the cache, built first if needed."""
    cache = cache or cache_dir()
    patches = patch_files(patch_dir)
    key = cache_key(patches)
    lib = cached_library(key, cache)
    with _locked(cache / ".lock"):
        if lib.exists() and not force:
            os.utime(lib.parent)  # most recently used: kept by _prune
            return lib
        tools = check_tools()
        sdist = fetch_sdist(cache)
        work = cache / "build" / key
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        log = work / "build.log"
        started = time.monotonic()
        _say(f"building {LIBRARY_NAME} ({len(patches)} patches, key {key}) in {work}")
        src = _extract(sdist, work)
        for p in patches:
            _run([tools["patch"], "-p1", "--forward", "--batch", "-i", str(p)], src, log)
        out = work / "out"
        configure = [tools["cmake"], "-G", "Ninja", "-S", str(src), "-B", str(out)]
        _run([*configure, f"-DCMAKE_MAKE_PROGRAM={tools['ninja']}", *CMAKE_FLAGS], work, log)
        _run([tools["ninja"], "-C", str(out), "unicorn"], work, log)
        built = out / LIBRARY_NAME
        if not built.is_file():
            raise BuildError(f"the build finished without {built}; log {log}")
        lib.parent.mkdir(parents=True, exist_ok=True)
        inputs = {"sdist": SDIST_SHA256, "flags": CMAKE_FLAGS, "recipe": RECIPE}
        inputs["patches"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in patches}
        (lib.parent / "inputs.json").write_text(json.dumps(inputs, indent=1) + "\n")
        install_file(built, lib)
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            work.parent.rmdir()  # when no other key's failed build is kept for its log
        _prune(lib.parent.parent, KEEP_BUILDS)
        _say(f"built in {time.monotonic() - started:.0f} s")
    return lib


def key_file(library: pathlib.Path) -> pathlib.Path:
    """Beside an installed library: the cache key it was built with."""
    return library.with_name(library.name + ".key")


def install_file(src: pathlib.Path, dest: pathlib.Path) -> None:
    """Copy by rename, so a process that has the old library mapped keeps it intact.
    A library from the cache (lib/<key>/) gets its key written beside it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    key = None
    if src.parent.parent.name == "lib" and len(src.parent.name) == 32:
        key = src.parent.name
    elif key_file(src).exists():
        key = key_file(src).read_text().strip()
    if key is not None:
        key_file(dest).write_text(key + "\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mshv.tcg.build",
        description=f"Build unicorn {VERSION} with mshv's patches into {PACKAGE_LIB_DIR}.",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        lib = build_library(force=args.force)
        dest = PACKAGE_LIB_DIR / LIBRARY_NAME
        install_file(lib, dest)
    except (BuildError, OSError) as e:
        print(f"mshv.tcg.build: {e}", file=sys.stderr)
        return 1
    print(f"{dest} (from {lib})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
