"""Command-line interface: `cti`."""


def main() -> None:
    from cti_cli.cli.app import run

    run()
