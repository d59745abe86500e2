"""Build shadowrec: the Cython kernels in ext/ become the capture.*._*_c extension modules."""

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

# ext/NAME.pyx -> the extension module, next to its pure-Python twin and its .pyi stub
KERNELS = {
    "packet": "capture.wire._packet_c",
    "pcapfile": "capture.wire._pcapfile_c",
    "sip": "capture.sip._message_c",
    "engine": "capture.media._engine_c",
    "g711": "capture.media._g711_c",
    "ring": "capture.live._ring_c",
}

extensions = [
    Extension(
        mod,
        [f"ext/{src}.pyx"],
        include_dirs=[np.get_include(), "ext"],
        extra_compile_args=["-O3"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for src, mod in KERNELS.items()
]

setup(
    name="shadowrec",
    version="0.1.0",
    description="Passive recorder for Cisco Built-in-Bridge calls seen on a SPAN port",
    packages=find_packages(include=["capture", "capture.*", "appliance", "appliance.*"]),
    ext_modules=cythonize(
        extensions, include_path=["ext"], language_level=3, compiler_directives={"embedsignature": True}
    ),
    install_requires=[
        "numpy>=1.24",
        "dpkt>=1.9",
        "pcapy-ng>=1.0",
        "pyroute2>=0.7",
        "pydantic-settings>=2.2",
        "fastapi>=0.110",
        "orjson>=3.8",
        "uvicorn>=0.29",
        "prometheus-client>=0.19",
        "boto3>=1.34",
        "paramiko>=3.4",
        "soundfile>=0.12",
        "pylibsrtp>=0.10",
        "av>=12,<=18.1.0",  # 18.1.1 (Dec 2026) ships no libopencore_amrnb encoder, the AMR tests' reference
        "psycopg[binary]>=3.1",
        "psycopg-pool>=3.2",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "atheris>=2.3",
            "httpx>=0.25",
            "httpx2>=2.16",
            "schemathesis>=4",
            "ruff>=0.8",
            "mypy>=1.13",
            "moto[server]>=5",
        ]
    },
    package_data={"appliance.api": ["static/*.html"]},
    entry_points={"console_scripts": ["shadowrec=appliance.cli:main"]},
    python_requires=">=3.11",
)
