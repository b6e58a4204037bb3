"""Build: render the Cython template, probe for OpenMP, compile the kernels.

Two builds of the kernels ship on x86-64 with gcc or clang: a baseline one
and one for AVX2+FMA; the package picks at import time what the CPU can run,
so one wheel is portable and still fast.

Environment:
  FASTXENT_DISABLE_OPENMP=1  build serial kernels without probing
  FASTXENT_REQUIRE_OPENMP=1  fail the build when OpenMP does not work
"""

import os
import platform
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CYTHON_DIR = Path("src", "fastxent", "_cython")
TEMPLATE = CYTHON_DIR / "_xent.pyx.tp"
VARIANTS = ("generic", "avx2")

# Safe for inf and nan: no -ffast-math (it would also undo the exp's rounding trick).
UNIX_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
ISA_FLAGS = {"generic": [], "avx2": ["-mavx2", "-mfma"]}

OPENMP_PROBE = textwrap.dedent("""
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += omp_get_num_threads() > 0;
        return n > 0 ? 0 : 1;
    }
""")


def render_templates():
    """Write one .pyx per build variant from the template, when stale."""
    from Cython.Tempita import sub

    template = HERE / TEMPLATE
    text = None
    for variant in VARIANTS:
        target = HERE / CYTHON_DIR / f"_xent_{variant}.pyx"
        if target.exists() and target.stat().st_mtime >= template.stat().st_mtime:
            continue
        if text is None:
            text = sub(template.read_text())
        target.write_text(f"# Generated from {TEMPLATE.name} by setup.py: do not edit.\n" + text)


def openmp_flags(compiler):
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def x86_unix(compiler):
    return (compiler.compiler_type != "msvc"
            and platform.machine().lower() in ("x86_64", "amd64", "i686", "i386"))


class BuildExt(build_ext):
    def build_extensions(self):
        compile_omp, link_omp = self.probe_openmp()
        if not x86_unix(self.compiler):
            self.extensions = [e for e in self.extensions if not e.name.endswith("_avx2")]
        for ext in self.extensions:
            variant = ext.name.rsplit("_", 1)[-1]
            if self.compiler.compiler_type == "msvc":
                ext.extra_compile_args += ["/O2"]
            else:
                ext.extra_compile_args += UNIX_FLAGS + ISA_FLAGS[variant]
            ext.extra_compile_args += compile_omp
            ext.extra_link_args += link_omp
        super().build_extensions()

    def probe_openmp(self):
        """Flags that build and link an OpenMP program here, or none (with a warning)."""
        if os.environ.get("FASTXENT_DISABLE_OPENMP") == "1":
            return [], []
        compile_flags, link_flags = openmp_flags(self.compiler)
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp, "openmp_probe.c")
            source.write_text(OPENMP_PROBE)
            try:
                objects = self.compiler.compile([str(source)], output_dir=tmp,
                                                extra_postargs=compile_flags)
                self.compiler.link_executable(objects, "openmp_probe", output_dir=tmp,
                                              extra_postargs=link_flags)
                return compile_flags, link_flags
            except Exception as exc:  # CompileError, LinkError
                message = (f"OpenMP does not work with this compiler ({exc}); building "
                           "serial kernels only (num_threads will be ignored)")
                if os.environ.get("FASTXENT_REQUIRE_OPENMP") == "1":
                    raise RuntimeError(message) from exc
                warnings.warn(message)
                return [], []


def extensions():
    from Cython.Build import cythonize

    render_templates()
    exts = [
        Extension(f"fastxent._cython._xent_{variant}",
                  [str(CYTHON_DIR / f"_xent_{variant}.pyx")],
                  include_dirs=[str(CYTHON_DIR)])
        for variant in VARIANTS
    ]
    return cythonize(exts, include_path=["src"], language_level=3,
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
