"""`python -m udeploy.engine.cli`: the console script (detached applies and tests start it so)."""

from udeploy.engine.cli.main import main

main()
