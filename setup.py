"""Build shadowrec: the Cython kernels in ext/ become capture._*_c extension modules."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = {"packet": "_packet_c", "g711": "_g711_c", "pcapfile": "_pcap_c", "engine": "_engine_c", "ring": "_ring_c",
           "sip": "_sip_c"}

extensions = [
    Extension(f"capture.{mod}", [f"ext/{src}.pyx"], include_dirs=[np.get_include(), "ext"],
              extra_compile_args=["-O3"], define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    for src, mod in KERNELS.items()
]

setup(
    name="shadowrec",
    version="0.1.0",
    description="Passive recorder for Cisco Built-in-Bridge calls seen on a SPAN port",
    packages=["capture", "appliance", "appliance.api", "appliance.vrrp"],
    ext_modules=cythonize(extensions, include_path=["ext"], language_level=3,
                          compiler_directives={"embedsignature": True}),
    install_requires=["numpy>=1.24", "dpkt>=1.9", "pcapy-ng>=1.0", "pyroute2>=0.7", "pydantic-settings>=2.2",
                      "fastapi>=0.110", "orjson>=3.8", "uvicorn>=0.29", "prometheus-client>=0.19"],
    extras_require={"test": ["pytest>=7", "hypothesis>=6", "httpx>=0.25", "httpx2>=2.16", "schemathesis>=4"]},
    package_data={"appliance.api": ["static/*.html"]},
    entry_points={"console_scripts": ["shadowrec=capture.cli:main"]},
    python_requires=">=3.11",
)
