#!/usr/bin/env python3
"""Run edgeseq's runtime on aarch64 under qemu user-mode emulation, from a cached environment.

${EDGESEQ_ARM64_CACHE:-~/.cache/edgeseq-arm64}/<key>/ holds sysroot/ (Debian's arm64 python3.11
from its .debs, no chroot), site/ (aarch64 wheels) and project/<hash>/ (edgeseq), each built in a
temp folder, marked .complete and renamed into place under a file lock. Stdlib only at import.
CLI: arm64_env.py [setup | run PYTHON-ARGS... | host-packages]
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helpers below
from arm64_apt import Arm64SetupError, debian_sources

PY = "3.11"
LAYOUT = 1  # bump when the build recipe changes: it is part of the cache key
APT_PACKAGES = ("python3.11", "libstdc++6")
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")
ROOTS = ("onnxruntime", "numpy", "click")  # what `import edgeseq.runtime` needs on a device
PROJECT_DIR = Path(__file__).resolve().parents[1]
VENV_PY = PROJECT_DIR / ".venv" / "bin" / "python"
SKIP_DIRS = {"build", "dist", "tests", "benchmarks", "examples", "scripts", "__pycache__"}
# qemu's default cpu "max" has SVE/SME: onnxruntime and numpy pick those kernels, which run
# up to 20x slower emulated than the NEON/dotprod ones picked on an emulated Neoverse-N1.
CPU = os.environ.get("EDGESEQ_ARM64_CPU", "neoverse-n1")
# qemu-user 7.2 shows the guest the host's x86 /proc/cpuinfo, on which onnxruntime's cpuinfo
# segfaults at import; with `-L SYSROOT` the guest reads SYSROOT/proc/cpuinfo (a Neoverse-N1).
CPUINFO = (
    "processor\t: {}\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
    "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n"
)


def log(msg: str) -> None:
    print(f"[arm64] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _step(what: str):
    t0 = time.monotonic()
    log(f"{what} ...")
    yield
    log(f"{what}: {time.monotonic() - t0:.1f}s")


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    cmd = [str(c) for c in cmd]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:
        raise Arm64SetupError(f"cannot run {cmd[0]}: {e}") from e
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
        raise Arm64SetupError(f"failed ({res.returncode}): {' '.join(cmd)}\n{tail}")
    return res


def cache_dir_for(packages: dict[str, str]) -> Path:
    root = os.environ.get("EDGESEQ_ARM64_CACHE") or Path.home() / ".cache" / "edgeseq-arm64"
    digest = hashlib.sha256(json.dumps([LAYOUT, sorted(packages.items())]).encode()).hexdigest()
    ort, np_ = packages.get("onnxruntime", "any"), packages.get("numpy", "any")
    return Path(root) / f"py{PY}-onnxruntime{ort}-numpy{np_}-{digest[:8]}"


def _build_once(final: Path, builder, stamp: dict | None = None) -> Path:
    """builder(tmp) unless final/.complete exists; marker written last, then atomic rename."""
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process building {final} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".complete").exists():
            return final
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by an aborted build
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            tmp.chmod(0o755)
            t0 = time.monotonic()
            builder(tmp)
            info = {**(stamp or {}), "seconds": round(time.monotonic() - t0, 1)}
            (tmp / ".complete").write_text(json.dumps(info) + "\n")
            if final.exists():  # an incomplete leftover of an older layout
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _compile(tree: Path, sysroot: Path) -> None:
    """Write .pyc: PYTHONDONTWRITEBYTECODE would make every emulated start re-parse numpy.
    All 3.11.x share one magic number, so the host's 3.11 compiles for Debian's 3.11.2. The
    exit status is ignored: a few stdlib test files are deliberately invalid."""
    args = ["-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "timestamp", str(tree)]
    host = sys.executable if sys.version_info[:2] == (3, 11) else shutil.which("python3.11")
    with _step(f"compile .pyc in {tree.name}"):
        if host:
            subprocess.run([host, *args], capture_output=True)
        else:  # no host 3.11: the emulated one compiles (slower, same result)
            run_aarch64(args, arm_env=Arm64Env(ensure_qemu(), sysroot, ()))


def ensure_qemu() -> str:
    """Path of qemu-aarch64-static; as root, apt-get installs qemu-user-static if missing."""
    exe = shutil.which("qemu-aarch64-static")
    if exe:
        return exe
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Arm64SetupError(
            "qemu-aarch64-static not found: as root, apt-get install qemu-user-static"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-user-static"]
    with _step("apt-get install qemu-user-static"):
        try:
            _run(install, env=env)
        except Arm64SetupError:  # no or stale package lists: update, then retry once
            _run(["apt-get", "update", "-q"], env=env)
            _run(install, env=env)
    return shutil.which("qemu-aarch64-static") or "/usr/bin/qemu-aarch64-static"


def _build_sysroot(dest: Path) -> None:
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise Arm64SetupError("building the arm64 sysroot needs apt-get and dpkg-deb (Debian)")
    with tempfile.TemporaryDirectory(prefix="edgeseq-apt-") as t:
        tmp = Path(t)  # a private apt state: the host's dpkg status and lists stay untouched
        for d in ("lists/partial", "archives/partial", "cache", "parts", "prefs"):
            (tmp / d).mkdir(parents=True)
        (tmp / "status").touch()
        (tmp / "sources.list").write_text("\n".join(debian_sources()) + "\n")
        conf = {
            "Dir::State::status": tmp / "status",
            "Dir::State::Lists": tmp / "lists",
            "Dir::State::extended_states": tmp / "ext",
            "Dir::Cache": tmp / "cache",
            "Dir::Cache::Archives": tmp / "archives",
            "Dir::Etc::SourceList": tmp / "sources.list",
            "Dir::Etc::SourceParts": tmp / "parts",
            "Dir::Etc::Preferences": tmp / "prefs.conf",
            "Dir::Etc::PreferencesParts": tmp / "prefs",
            "APT::Architecture": "arm64",
            "APT::Architectures::": "arm64",
            "APT::Install-Recommends": "false",
            "APT::Sandbox::User": "root",
        }
        apt = ["apt-get", "-q", *(a for k, v in conf.items() for a in ("-o", f"{k}={v}"))]
        with _step("apt-get update (private arm64 package lists)"):
            _run([*apt, "update"])
        with _step(f"apt-get download arm64 {' '.join(APT_PACKAGES)} and dependencies"):
            _run([*apt, "install", "-y", "--download-only", *APT_PACKAGES])
        debs = sorted((tmp / "archives").glob("*.deb"))
        mb = sum(d.stat().st_size for d in debs) / 1e6
        with _step(f"unpack {len(debs)} .deb ({mb:.0f} MB) with dpkg-deb -x"):
            for deb in debs:
                _run(["dpkg-deb", "-x", deb, dest])
    for link in [p for p in dest.rglob("*") if p.is_symlink()]:  # absolute: keep inside
        if (target := os.readlink(link)).startswith("/"):
            link.unlink()
            link.symlink_to(os.path.relpath(dest / target.lstrip("/"), link.parent))
    (dest / "proc").mkdir(exist_ok=True)
    (dest / "proc/cpuinfo").write_text("".join(map(CPUINFO.format, range(os.cpu_count() or 1))))
    _compile(dest / "usr" / "lib" / f"python{PY}", dest)


def ensure_sysroot(cache_dir: Path) -> Path:
    """Debian's arm64 python3.11 + libstdc++6 unpacked into cache_dir/sysroot."""
    return _build_once(Path(cache_dir) / "sysroot", _build_sysroot, {"apt": APT_PACKAGES})


def _pip() -> list[str]:  # the project's .venv when this python has no pip
    no_pip = importlib.util.find_spec("pip") is None
    return [str(VENV_PY if no_pip and VENV_PY.exists() else sys.executable), "-m", "pip"]


def host_packages() -> dict[str, str]:
    """{name: version} installed on the host for onnxruntime, numpy, click and their transitive
    unconditional requirements (from METADATA). Asks .venv if this python lacks onnxruntime."""
    from importlib import metadata

    try:
        metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        if not VENV_PY.exists():
            raise Arm64SetupError("onnxruntime is not installed on the host") from None
        return json.loads(_run([VENV_PY, __file__, "host-packages"]).stdout)
    found, todo = {}, list(ROOTS)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop().lower())
        if name not in found:
            found[name] = metadata.version(name)
            todo += [
                re.match(r"[\w.-]+", r)[0] for r in metadata.requires(name) or [] if ";" not in r
            ]  # no extras, no platform/python-conditional deps
    return dict(sorted(found.items()))


def ensure_site(cache_dir: Path, packages: dict[str, str]) -> Path:
    """aarch64 cp311 wheels of packages ({name: version}), pip-installed into cache_dir/site."""
    specs = [f"{n}=={v}" if v else n for n, v in packages.items()]
    plat = [
        "--only-binary=:all:",
        "--no-deps",
        "--implementation",
        "cp",
        "--python-version",
        PY,
        *(a for p in PLATFORMS for a in ("--platform", p)),
    ]

    def build(dest: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="edgeseq-wheels-") as wheels:
            with _step(f"pip download aarch64 wheels {' '.join(specs)}"):
                _run([*_pip(), "download", "-q", *plat, "-d", wheels, *specs])
            files = sorted(Path(wheels).glob("*.whl"))
            log("  " + ", ".join(f"{f.name} {f.stat().st_size / 1e6:.1f} MB" for f in files))
            with _step(f"pip install {len(files)} wheels --target site"):
                _run([*_pip(), "install", "-q", "--no-index", *plat, "--target", dest, *files])
        _compile(dest, ensure_sysroot(cache_dir))

    return _build_once(Path(cache_dir) / "site", build, {"packages": packages})


def _project_files(project_dir: Path):
    for root, dirs, files in os.walk(project_dir):
        dirs[:] = sorted(
            d
            for d in dirs
            if not (d[0] == "." or d in SKIP_DIRS or d.endswith((".egg-info", "venv")))
        )
        yield from (Path(root, f) for f in sorted(files) if not f.endswith((".pyc", ".onnx")))


def install_project(site_dir: Path, project_dir: Path = PROJECT_DIR) -> Path:
    """pip install --no-deps the edgeseq project into site_dir. pip applies the package-dir
    mapping (runtime/ -> edgeseq.runtime) that a plain copy would miss; it builds from a copy
    of the sources so the work tree gets no build/ or egg-info."""
    project_dir = Path(project_dir)
    with tempfile.TemporaryDirectory(prefix="edgeseq-src-") as tmp:
        for f in _project_files(project_dir):
            (Path(tmp) / f.relative_to(project_dir)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, Path(tmp) / f.relative_to(project_dir))
        m = re.search(r'^readme\s*=\s*"([^"]+)"', Path(tmp, "pyproject.toml").read_text(), re.M)
        if m and not Path(tmp, m[1]).exists():
            Path(tmp, m[1]).write_text("edgeseq\n")  # setuptools refuses a missing readme
        pip = [*_pip(), "install", "-q", "--no-deps", "--target", site_dir, tmp]
        with _step(f"pip install --no-deps the project {project_dir}"):
            try:
                _run([*pip, "--no-build-isolation", "--no-index"])
            except Arm64SetupError:  # this python lacks a recent setuptools: let pip fetch it
                _run(pip)
    return Path(site_dir)


def ensure_project(cache_dir: Path, project_dir: Path = PROJECT_DIR) -> Path:
    """install_project into cache_dir/project/<hash of its sources>; keeps the 3 newest."""
    h = hashlib.sha256()
    for f in _project_files(Path(project_dir)):
        h.update(str(f.relative_to(project_dir)).encode() + b"\0" + f.read_bytes())
    final, sysroot = Path(cache_dir) / "project" / h.hexdigest()[:12], ensure_sysroot(cache_dir)
    _build_once(final, lambda d: (install_project(d, project_dir), _compile(d, sysroot)))
    os.utime(final)
    for old in sorted(final.parent.glob("[!.]*"), key=lambda p: p.stat().st_mtime)[:-3]:
        shutil.rmtree(old, ignore_errors=True)  # the one just used is the newest
    return final


@dataclass(frozen=True)
class Arm64Env:
    qemu: str
    sysroot: Path
    site_dirs: tuple[Path, ...]  # PYTHONPATH order: the project, then the wheels

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / f"python{PY}"


def ensure_env(
    packages: dict[str, str] | None = None, project_dir: Path | None = PROJECT_DIR
) -> Arm64Env:
    """All of it, cached: qemu, sysroot, wheels and, unless project_dir is None, edgeseq.
    packages defaults to host_packages(): the host's versions, so both sides run the same."""
    t0, packages = time.monotonic(), packages or host_packages()
    cache_dir = cache_dir_for(packages)
    qemu, sysroot = ensure_qemu(), ensure_sysroot(cache_dir)
    sites = (ensure_site(cache_dir, packages),)
    if project_dir is not None:
        sites = (ensure_project(cache_dir, Path(project_dir)), *sites)
    log(f"aarch64 environment ready in {time.monotonic() - t0:.1f}s: {cache_dir}")
    return Arm64Env(qemu, sysroot, sites)


def run_aarch64(
    argv_or_script: str | os.PathLike | list,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    *,
    arm_env: Arm64Env | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run the emulated python3.11 -S -P (sys.path: PYTHONPATH and the stdlib only; neither a
    host site-packages nor the cwd, whose edgeseq/ lacks the runtime) and capture its output.
    A list is python's argv; a Path, or a str naming an existing file, is a script; any other
    str is code for -c. `env` is added to a minimal environment."""
    arm = arm_env or ensure_env()
    if isinstance(argv_or_script, (list, tuple)):
        argv = [str(a) for a in argv_or_script]
    elif isinstance(argv_or_script, os.PathLike) or os.path.isfile(argv_or_script):
        argv = [str(argv_or_script)]
    else:
        argv = ["-c", argv_or_script]
    full = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    full.update(
        PYTHONPATH=os.pathsep.join(map(str, arm.site_dirs)),
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1",
        **(env or {}),
    )
    cmd = [arm.qemu, "-cpu", CPU, "-L", str(arm.sysroot), str(arm.python), "-S", "-P", *argv]
    return subprocess.run(cmd, env=full, timeout=timeout, cwd=cwd, capture_output=True, text=True)


def main(argv: list[str]) -> int:
    cmd, args = (argv or ["setup"])[0], argv[1:]
    if cmd == "host-packages":
        print(json.dumps(host_packages()))
    elif cmd == "run":
        res = run_aarch64([a for a in args if a != "--"] or ["-VV"])
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        return res.returncode
    elif cmd == "setup":
        arm = ensure_env()
        print(
            f"qemu: {arm.qemu}\npython: {arm.python}\n"
            f"PYTHONPATH={os.pathsep.join(map(str, arm.site_dirs))}"
        )
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
