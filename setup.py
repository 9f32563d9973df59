from setuptools import find_packages, setup

setup(
    name="xenballoond",
    version="0.1.0",
    description="In-guest Xen memory ballooning daemon (a Python port of tools/xenballoon)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="GPL-2.0-only",
    python_requires=">=3.9",
    packages=find_packages(include=["xenballoond", "xenballoond.*"]),
    install_requires=["python-daemon>=2.3", "lockfile>=0.12"],
    extras_require={"test": ["pytest>=7", "hypothesis>=6", "wheel", "mypy>=1.8"]},
    entry_points={
        "console_scripts": [
            "xenballoond = xenballoond.guest.cli:main",
            "xenballoon-monitor = xenballoond.dom0.monitor:main",
            "xenballoon-sim = xenballoond.sim.host:main",
        ],
    },
)
