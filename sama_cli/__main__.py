"""`python -m sama_cli ...` and `torchrun -m sama_cli ...` run the same app as `sama`."""

from sama_cli.cli import main

if __name__ == "__main__":
    main()
