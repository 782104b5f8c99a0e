"""Subcommands of ``rbvet``, one module each, registered in `rbvet.cli.build_parser`.

Each module offers ``add_parser(commands)``, which adds its subparser and sets its handler.
"""
