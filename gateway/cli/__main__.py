"""`python -m gateway.cli`: the same as the `workflow-service` command."""

from gateway.cli import main

raise SystemExit(main())
