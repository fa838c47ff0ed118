"""``python -m hpo`` runs the command line."""

from hpo.cli import main

if __name__ == "__main__":
    main()
