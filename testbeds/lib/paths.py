"""Where the repository, the build and the system tools are."""
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Debian's own interpreter: it is the one with python3-aiosmtpd installed.
PYTHON = "/usr/bin/python3"


def build_dir() -> Path:
    return Path(os.environ.get("SLUICE_BUILD_DIR", REPO / "build")).resolve()


def project_binary(name: str) -> Path:
    """A binary built by CMake, looked up under $SLUICE_BUILD_DIR."""
    root = build_dir()
    for rel in (Path("tools") / "sink" / name, Path("drivers") / name, Path("tools") / name,
                Path(name), Path("bin") / name):
        p = root / rel
        if p.is_file() and os.access(p, os.X_OK):
            return p
    for p in root.rglob(name):
        if p.is_file() and os.access(p, os.X_OK):
            return p
    raise FileNotFoundError(
        f"{name} not found under {root}; build it (ninja -C {root} {name}) "
        "or point SLUICE_BUILD_DIR at your build directory")


def system_tool(name: str, *candidates: str) -> str:
    """A system program, by its Debian path first and then $PATH."""
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not found:
        raise FileNotFoundError(f"{name} is not installed (tools/install-deps.sh installs it)")
    return found
