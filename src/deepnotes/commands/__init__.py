"""Extra `deepnotes` subcommands; each module registers itself with `deepnotes.cli.command`."""
