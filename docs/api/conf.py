"""Sphinx configuration of the docs: the tutorials, executed at every build, and the API reference
built from the docstrings: ``make docs``."""

import pyro_vae

project = "pyro_vae"
release = pyro_vae.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "myst_nb"]
# The tutorials (docs/tutorials, linked here as tutorials/) are MyST text notebooks. Each is run top
# to bottom at every build, in a temporary folder, and a failing cell fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 900
nb_execution_in_temp = True
nb_merge_streams = True
nb_execution_show_tb = True
myst_enable_extensions = ["dollarmath"]
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
