"""Entry point of the measuring child process (``python -m hwnas.measure._child``)."""

import sys

from hwnas.measure.worker import _child_main

if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
