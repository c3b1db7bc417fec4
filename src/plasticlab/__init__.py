"""plasticlab: which learning rule is this network really following, and what does that rule do to learning?"""

__version__ = "0.1.0"

from plasticlab.api import run
from plasticlab.errors import PlasticlabError
from plasticlab.identification import identify

__all__ = ["PlasticlabError", "__version__", "identify", "run"]
