"""Install size of the app and of each extra, in fresh virtualenvs built from this checkout.

    .venv/bin/python bench/install_size.py [--extras "" api postgres pgvector demo oscar convert]

Builds the wheel once, then for each extra makes an empty virtualenv, runs `pip install
"<wheel>[extra]"` (pip's own resolution, dependencies included; pip's cache makes re-runs
quick) and measures its site-packages (pip, setuptools and wheel left out: every virtualenv has
them). Prints JSON: MB by extra ("" is the runtime alone), and whether TensorFlow imports there.
tests/test_packaging.py uses the same helpers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIP = ("-m", "pip", "install", "--quiet", "--disable-pip-version-check")
# What `python -m venv` puts in every environment, before anything is installed.
VENV_OWN = ("pip", "setuptools", "wheel", "_distutils_hack", "distutils-precedence.pth")


def build_wheel(dest: Path) -> Path:
    """The app's wheel, built from this checkout into ``dest``."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), str(REPO)],
        check=True,
        capture_output=True,
    )
    [wheel] = dest.glob("django_visual_recs-*.whl")
    return wheel


def fresh_venv(path: Path, *requirements: str) -> Path:
    """A new virtualenv at ``path`` with ``requirements`` installed by pip, one install each in order;
    returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    for requirement in requirements:
        subprocess.run([str(python), *PIP, requirement], check=True)
    return python


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def installed_bytes(python: Path) -> int:
    """Bytes on disk of what was installed into ``python``'s site-packages (not the venv's own pip)."""
    total = 0
    for entry in site_packages(python).iterdir():
        if entry.name.startswith(VENV_OWN):
            continue
        files = [entry] if entry.is_file() else (p for p in entry.rglob("*") if p.is_file() and not p.is_symlink())
        total += sum(f.stat().st_size for f in files)
    return total


def imports(python: Path, module: str) -> bool:
    """Whether ``module`` can be imported by ``python``."""
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extras", nargs="*", default=["", "api", "postgres", "pgvector", "demo", "oscar", "convert"])
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="visual-recs-install-") as tmp:
        wheel = build_wheel(Path(tmp) / "dist")
        for extra in args.extras:
            python = fresh_venv(Path(tmp) / f"venv-{extra or 'runtime'}", f"{wheel}[{extra}]" if extra else str(wheel))
            figures[extra or "runtime"] = {
                "installed_mb": round(installed_bytes(python) / 2**20),
                "imports_tensorflow": imports(python, "tensorflow"),
            }
            print(extra or "runtime", figures[extra or "runtime"], file=sys.stderr)
    print(json.dumps({"python": sys.version.split()[0], "extras": figures}, indent=2))


if __name__ == "__main__":
    main()
