import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    # The one version string is xenballoond.__version__; read it as text so that
    # building never imports the package (or python-daemon and lockfile).
    with open(os.path.join(HERE, "xenballoond", "__init__.py"), encoding="utf-8") as f:
        match = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if match is None:
        raise RuntimeError("no __version__ = \"...\" line in xenballoond/__init__.py")
    return match.group(1)


setup(
    name="xenballoond",
    version=read_version(),
    description="In-guest Xen memory ballooning daemon (a Python port of tools/xenballoon)",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="GPL-2.0-only",
    # 3.9: Debian 11 and RHEL 9 guests; CI runs 3.11 and checks 3.9 in tests/test_packaging.py
    python_requires=">=3.9",
    packages=find_packages(include=["xenballoond", "xenballoond.*"]),
    install_requires=["python-daemon>=2.3", "lockfile>=0.12"],
    # pytest-timeout: no test can hang (pytest.ini's limit); pytest-randomly: a new order every run;
    # plot: xenballoon-sim --plot and bench_balance.py --plot (3.7: a legend outside the axes),
    # never needed by the daemons; the tests draw too, so test has it
    extras_require={"test": ["pytest>=7", "pytest-timeout>=2.1", "pytest-randomly>=3.12",
                             "hypothesis>=6", "wheel", "mypy>=1.8", "prometheus_client>=0.16",
                             "matplotlib>=3.7"],
                    "plot": ["matplotlib>=3.7"]},
    entry_points={
        "console_scripts": [
            "xenballoond = xenballoond.guest.cli:main",
            "xenballoon-monitor = xenballoond.dom0.monitor:main",
            "xenballoon-balancer = xenballoond.dom0.balancer:main",
            "xenballoon-sim = xenballoond.sim.host:main",
        ],
    },
)
