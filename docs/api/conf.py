"""Sphinx configuration of the API reference, built from the docstrings: ``make docs``."""

import pyro_vae

project = "pyro_vae"
release = pyro_vae.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
# Type hints name torch, Pyro and NumPy classes that this reference does not document.
nitpicky = False
suppress_warnings = ["autodoc.import_object"]
