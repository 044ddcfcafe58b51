"""The notebook tooling: the notebook registry, the ``flatlib`` command line, the run-all scheduler and
the Sphinx extension of the book. The top layer: it imports the experiments, nothing imports it."""
