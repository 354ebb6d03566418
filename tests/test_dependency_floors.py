"""pyproject.toml's ranges leave out the releases with known advisories, and CI audits what is installed.

The releases named here are the last vulnerable one and the first fixed one of each advisory
the floors cite (issue 19, item 10); `make audit` checks the installed environment against
PyPI's advisories as they are published.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def requirements_of(name: str) -> list[Requirement]:
    """Every requirement on ``name`` in the dependencies and the extras (a package may be in several)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(line for extra in project["optional-dependencies"].values() for line in extra)]
    found = [req for req in map(Requirement, lines) if canonicalize_name(req.name) == canonicalize_name(name)]
    assert found, f"pyproject.toml does not require {name}"
    return found


@pytest.mark.parametrize(
    "name, vulnerable, fixed",
    [
        ("djangorestframework", "3.15.1", "3.15.2"),  # CVE-2024-21520
        ("gunicorn", "22.0.0", "23.0.0"),  # CVE-2024-6827
        ("Django", "4.2.26", "4.2.27"),  # CVE-2025-13372, CVE-2025-64460
        ("Django", "5.1.14", "5.1.15"),
        ("Django", "5.2.8", "5.2.9"),
        ("Pillow", "10.2.0", "10.3.0"),  # CVE-2024-28219
        ("Pillow", "11.2.1", "11.3.0"),  # CVE-2025-48379
        ("tqdm", "4.66.2", "4.66.3"),  # CVE-2024-34062
        ("keras", "3.11.3", "3.12.0"),  # CVE-2025-12058, CVE-2025-12060
    ],
)
def test_the_ranges_leave_out_the_vulnerable_release_and_admit_the_fixed_one(name, vulnerable, fixed):
    for requirement in requirements_of(name):
        assert not requirement.specifier.contains(vulnerable), f"{requirement} admits {name} {vulnerable}"
        assert requirement.specifier.contains(fixed), f"{requirement} refuses {name} {fixed}"


@pytest.mark.parametrize("version", ["4.2.0", "5.0.14", "5.1.0", "5.2.0"])
def test_no_django_release_before_the_floors_of_its_series(version):
    assert not any(requirement.specifier.contains(version) for requirement in requirements_of("Django"))


def test_drf_stays_below_3_18_which_would_upgrade_django_4_2():
    (requirement,) = requirements_of("djangorestframework")
    assert requirement.specifier.contains("3.17.2") and not requirement.specifier.contains("3.18.0")


def test_ci_audits_the_installed_packages_before_the_suites():
    run = (REPO / ".ci" / "run").read_text()
    assert run.index(".ci/audit") < run.index("make test")
    # Only "cannot run here" (3) lets the suites go on; a vulnerability (1) ends the run.
    assert '[ "$audit" -eq 3 ]' in run and 'exit "$audit"' in run
    audit = (REPO / ".ci" / "audit").read_text()
    assert "--vulnerability-service pypi --strict" in audit
    assert "audit:" in (REPO / "Makefile").read_text()
