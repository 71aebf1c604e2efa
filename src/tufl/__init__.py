"""tufl: threshold-adaptive unsupervised focal loss (TUFL) and cross-domain image mixing
for unsupervised domain adaptation of semantic segmentation (Yan et al., T-ITS 2023).

The package is layered, each layer importing only those below it (``docs/extending.md``):
``runtime`` (files, errors, checks, registries), ``data``, ``models``, the method
(``losses``, ``mixing``, ``objective``), ``evaluation``, ``train`` (the engine),
``config`` (the experiment config assembled), the applications ``demo`` and ``bench``,
and ``cli`` on top.
"""

from tufl.runtime.moved import install as _install_moved_paths

__version__ = "0.1.0"

_install_moved_paths()  # modules of the earlier layout stay importable under their old paths
