"""One distribution, five import packages, one extra per backend.

Requirements live in requirements/*.txt (one file per extra) so the Makefile and CI can
hash them to key their cached virtual environments.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "requirements"


def read_version() -> str:
    """kubemind/__init__.py's __version__, read as text: setup.py must not import the package."""
    text = (HERE / "kubemind" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if match is None:
        raise RuntimeError("kubemind/__init__.py has no __version__ line")
    return match.group(1)


def read_requirements(name: str) -> list[str]:
    lines = (REQUIREMENTS / f"{name}.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# import package -> the top-level folder that holds it ("" = the repository root)
PACKAGE_ROOTS = {
    "kubemind": "",
    "kubemind_predictors": "predictors",
    "kubemind_transformers": "transformers",
    "kubemind_registry": "registry",
    "kubemind_workers": "workers",
}

EXTRAS = ["llm-cpu", "llm-gpu", "triton", "onnx", "mlflow", "feast", "milvus", "kafka", "jobs", "manifests", "drift", "dev"]

setup(
    name="kubemind",
    version=read_version(),
    description="KServe/Knative model-serving configuration and custom predictors",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        package
        for root in PACKAGE_ROOTS.values()
        for package in find_packages(where=root or ".", include=["kubemind*"])
    ],
    package_dir={name: f"{root}/{name}" if root else name for name, root in PACKAGE_ROOTS.items()},
    include_package_data=True,
    package_data={
        "kubemind_transformers.image": ["*.tsv"],
        # The job tables' migrations, applied at start by the writer and the workers.
        "kubemind_workers": ["migrations/*.sql"],
        # The CRDs `kubemind validate` checks against, so it works outside a checkout.
        "kubemind.manifests": ["crds/*.md", "crds/**/*.yaml"],
    },
    install_requires=read_requirements("base"),
    extras_require={extra: read_requirements(extra) for extra in EXTRAS},
    entry_points={"console_scripts": ["kubemind = kubemind.cli:main"]},
)
