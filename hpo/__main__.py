"""``python -m hpo`` runs the command line."""

from hpo.cli.main import main

if __name__ == "__main__":
    main()
