"""Build hook: compile every Cython source in ext/ into a module of the `floorwatch.edge` package.

The statistics core lives in ext/ (Cython, typed memoryviews, nogil loops); it is compiled at
install time into ``floorwatch.edge._<name>``. No generated C is committed.
"""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent

# One import namespace: each top-level folder installs as floorwatch.<folder> (nothing generic such as
# "edge" or "drivers" lands at the top of site-packages). Every folder below one of them with an
# __init__.py is a subpackage, so a new module or subpackage needs no change here.
PARTS = ("edge", "drivers", "gateway", "bridge", "dashboards")
package_dir = {f"floorwatch.{part}": part for part in PARTS if (HERE / part / "__init__.py").exists()}
packages = sorted(
    "floorwatch." + ".".join(init.parent.relative_to(HERE).parts)
    for part in package_dir.values()
    for init in (HERE / part).rglob("__init__.py")
)
extensions = [
    Extension(
        f"floorwatch.edge.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted((HERE / "ext").glob("*.pyx"))
]

setup(
    package_dir=package_dir,
    packages=packages,
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
