"""`python -m culturalign ...` == `culturalign ...`.

Lightning's launcher starts extra ranks by re-running the command line; with `-m` it re-runs
`python -m culturalign.__main__ <args>`, which lands here again.
"""

from culturalign.cli import main

if __name__ == "__main__":
    main()
