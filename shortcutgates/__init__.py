"""shortcutgates: gates that keep a strong-lens finder from learning the paired-data shortcut.

The package is laid out along the pipeline::

    schema -> io -> simulate -> identity/splits -> preprocess -> model/train -> gates -> report -> plugin
"""

__version__ = "0.2.0"
