"""vallr-pin: Mandarin lip reading with a dual (character + toneless pinyin) decoder and Pinyin-guided LLM refinement.

The pinned runtime stack is installed by ``make -C tools`` (see tools/requirements.txt): ESPnet cannot be
installed through its own metadata, so ``install_requires`` stays empty on purpose and this package is installed
``--no-deps`` into that environment.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "vallr_pin" / "__init__.py").read_text()).group(1)

# One console script per stage entry point: `vallr-<name>` == `python -m vallr_pin.bin.<name>`.
entry_points = sorted(
    f"vallr-{p.stem.replace('_', '-')} = vallr_pin.bin.{p.stem}:main"
    for p in (here / "vallr_pin" / "bin").glob("*.py")
    if p.stem != "__init__"
)

setup(
    name="vallr-pin",
    version=version,
    description="ESPnet-style recipes for Mandarin visual speech recognition with Pinyin-guided LLM refinement",
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["vallr_pin", "vallr_pin.*"]),
    include_package_data=True,
    package_data={"vallr_pin": ["llm/templates/*", "synth/*.json"]},
    install_requires=[],
    entry_points={"console_scripts": entry_points},
)
