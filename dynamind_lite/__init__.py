"""dynamind-lite: an educational reproduction of Dyna-Mind (ICLR 2026).

The package holds the definitions; the notebooks in ``notebooks/`` tell the story
and call them. Each public definition names, in its docstring, the notebook that
introduces it.
"""

__version__ = "0.1.0"
