"""``python -m siglip_data``: the ``siglip-data`` command (build offline datasets, train tokenizers,
count samples in shards). ``python -m siglip_data --help`` lists the subcommands."""

from siglip_data._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
