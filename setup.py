"""Packaging: the `easybackup` package, its JSON Schema, and the `easybackup`/`easybackup-once` scripts."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "easybackup" / "__init__.py").read_text()).group(1)

setup(
    name="easybackup",
    version=VERSION,
    description="Streaming PostgreSQL backups to S3 on a schedule, with Slack, health and Prometheus",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["easybackup", "easybackup.*"]),
    install_requires=[line.strip() for line in (HERE / "requirements.txt").read_text().splitlines()
                      if line.strip() and not line.startswith("#")],
    # The schema is the source of truth; an installed copy finds it under <prefix>/share/easybackup/schema.
    data_files=[("share/easybackup/schema", ["schema/easybackup.schema.json"])],
    entry_points={
        "console_scripts": [
            "easybackup=easybackup.cli:main",
            "easybackup-once=easybackup.cli:once_main",
        ]
    },
)
