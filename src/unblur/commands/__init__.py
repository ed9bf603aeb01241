"""One module per `unblur` sub-command: ``add_parser(subparsers)`` and ``run(args)``."""
