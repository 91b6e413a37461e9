"""Print the README's quick-start commands, one per line, exactly as written.

They are the ```bash block after the marker comment that names this file; CI runs
each line verbatim in a new virtual environment (ci/newcomer.sh), and
tests/test_readme.py checks that there are two: one installs and runs the main
job, one installs what the tests need and runs them.
Usage: python3 ci/readme_commands.py [README.md]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = "<!-- ci/readme_commands.py reads"


def commands(readme: str) -> list[str]:
    """The lines of the ```bash block that follows the marker comment."""
    at = readme.index(MARKER)
    block = re.search(r"```bash\n(.*?)\n```", readme[at:], flags=re.S)
    if block is None:
        raise ValueError("README: no ```bash block after the quick-start marker")
    return [line for line in block[1].splitlines() if line.strip()]


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent.parent / "README.md")
    print("\n".join(commands(path.read_text(encoding="utf-8"))))
