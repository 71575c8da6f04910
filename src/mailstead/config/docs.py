"""Print the configuration reference: ``python -m mailstead.config.docs > docs/configuration.md``.
"""

from __future__ import annotations

import sys

from mailstead.config._render import render_docs


def main() -> int:
    sys.stdout.write(render_docs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
