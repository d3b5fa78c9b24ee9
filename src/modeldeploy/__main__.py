"""``python -m modeldeploy``: the same as the ``modeldeploy`` command."""

from __future__ import annotations

from modeldeploy.cli import run

if __name__ == "__main__":
    run()
