"""Package discovery for setuptools (all other metadata is in pyproject.toml).

The repository's top-level folders install under one namespace, ``ffkit.<folder>``. Every
sub-package below them is found here, so adding a recipe family is adding its folder under
``recipes/`` — nothing to list in pyproject.toml or in the recipe registry.
"""

from setuptools import find_packages, setup

TOP_LEVEL = ("toolkit", "recipes", "runtime", "validation")

packages = [f"ffkit.{top}" for top in TOP_LEVEL] + [
    f"ffkit.{top}.{sub}" for top in TOP_LEVEL for sub in find_packages(top)]

setup(packages=packages, package_dir={f"ffkit.{top}": top for top in TOP_LEVEL})
