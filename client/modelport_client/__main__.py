"""`modelport` (and `python -m modelport_client`): the command, when its extra is installed."""

import sys


def main() -> None:
    """Run the command; without click and rich, say how to install them."""
    try:
        from .cli import cli
    except ImportError as exc:
        sys.exit(
            f"modelport: the command needs {exc.name or 'its extra'}: "
            "pip install 'modelport-client[cli]'"
        )
    cli(prog_name="modelport")


if __name__ == "__main__":
    main()
